// SPDX-License-Identifier: MIT
// goro::worker_pool<In, Out>: the bounded worker pool that survives what kills
// naive pools: overload, shutdown, slow tasks, throwing tasks and leaks.
//
//   goro::worker_pool<job, reply> pool({.workers = 8, .overflow = goro::overflow_policy::reject,
//                                       .task_timeout = 100ms, .name = "resize"},
//                                      [](const goro::context& ctx, job j) { return handle(ctx, j); });
//   pool.submit(j);                       // accepted / dropped / rejected / closed
//   for (auto r : pool.results()) ...     // a goro::result<reply> per finished task
//   pool.wait();                          // every accepted task finished
//   goro::pool_stats s = pool.shutdown(2s);   // drain, then cancel what is left
//
//   goro::run_pool(ctx, n, in, fn) -> chan<result<Out>>   Go's canonical streaming pool
#pragma once

#include "goro/async.hpp"
#include "goro/chan.hpp"
#include "goro/condition_variable.hpp"
#include "goro/context.hpp"
#include "goro/errors.hpp"
#include "goro/mutex.hpp"
#include "goro/result.hpp"
#include "goro/select.hpp"
#include "goro/spawn.hpp"
#include "goro/wait_group.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace goro {

// What submit() does when the queue is full.
//   block   wait for room (context-aware: submit(ctx, v)); loses nothing,
//           slows the producer to the pool's pace. The default.
//   drop    discard the task at once and count it (stats().dropped): for
//           work that is useless when late (metrics samples, cache warms).
//   reject  refuse at once and tell the caller (submit_status::rejected),
//           who decides: retry later, answer "busy", shed load upstream.
enum class overflow_policy { block, drop, reject };

enum class submit_status {
  accepted,  // queued; it will run (or be reported cancelled at shutdown)
  dropped,   // queue full, policy drop: discarded and counted
  rejected,  // queue full, policy reject
  closed,    // the pool is shutting down
  canceled,  // policy block: the caller's context ended while waiting for room
};

struct pool_options {
  std::size_t workers = 4;                    // worker fibers
  std::size_t queue_capacity = 0;             // queued tasks; 0 = 2 x workers
  overflow_policy overflow = overflow_policy::block;
  std::chrono::milliseconds task_timeout{0};  // per task, through its context; 0 = none
  std::string name = "pool";                  // names the worker fibers (dump_fibers)
  std::size_t results_capacity = 0;           // buffer of results(); 0 = queue capacity
};

// A snapshot of a pool's counters. Each counter is exact and never goes down
// from one snapshot to the next; the counters are read one after another
// while the workers run on (no lock stops them), so a task that changes state
// during the read may show in two places or in none (active and completed,
// say). Once the pool is idle (wait() returned) or shut down, they add up.
struct pool_stats {
  std::size_t workers = 0;
  std::size_t active = 0;       // tasks running now
  std::size_t queued = 0;       // accepted, not yet taken by a worker
  std::uint64_t completed = 0;  // returned normally
  std::uint64_t failed = 0;     // threw
  std::uint64_t timed_out = 0;  // ended after their task_timeout
  std::uint64_t cancelled = 0;  // cancelled by shutdown (running or still queued)
  std::uint64_t dropped = 0;
  std::uint64_t rejected = 0;
};

// worker_pool runs fn(ctx, item) for each submitted item on a fixed number of
// fibers, through a bounded queue.
//
// Results: with a callback, each finished task's result<Out> is handed to it
//   (on the worker fiber; it must not block for long); otherwise results()
//   is a channel of them, which the caller must drain (a full results
//   channel blocks the workers: backpressure, never loss). Out may be void.
// Failures: a task that throws counts as failed, its exception is in its
//   result, and its worker goes on. A task past task_timeout sees its
//   context cancelled and counts as timed out; a task that ignores its
//   context cannot be killed (it runs on, holding its worker).
// Contexts: with a task_timeout, each task gets a context of its own, which
//   ends at its deadline or when it returns. Without one, a task gets its
//   worker's context, shared by the tasks that worker runs (no per-task
//   cost): it ends at shutdown (when the drain deadline passes, or when the
//   worker exits), not when the task returns. Either way, shutdown's
//   cancellation reaches every running task through it.
// Shutdown: shutdown(d) stops accepting, lets queued and running tasks
//   finish until d, then cancels the rest through their contexts (queued
//   tasks are not started; all are reported as cancelled). It returns once
//   every worker has exited: no fiber is left behind. The destructor calls
//   shutdown(0) if needed.
// Thread-safety: submit, stats, wait and shutdown may be called from any
//   fiber or plain thread.
// Cost: no lock of the pool's own and no read-modify-write of its own on
//   the task path, and no cache line that a submitter and a worker on
//   different cores both write per task. A submit is the queue's send; a
//   task (without task_timeout) is the queue's receive, the fn and result
//   calls and plain stores to its worker's own counters. wait() is exact
//   all the same: it counts accepted tasks by the queue's own send count,
//   and workers check for it only when they find the queue empty. (Per-core
//   atomic tallies, with each task copied out of a try_recv_result, cost
//   36.6 against 21.9 ns per task on 2 workers; one shared counter cost up
//   to a quarter more. An fn that takes its context by value costs two
//   more atomic operations per task, on its worker's refcount only.)
template <class In, class Out>
class worker_pool {
 public:
  // fn may take its context by value or by const reference; by const
  // reference saves a refcount round trip (two atomic operations) per task.
  using task_fn = std::function<Out(const context&, In)>;
  using result_fn = std::function<void(result<Out>)>;

  worker_pool(pool_options options, task_fn fn, result_fn on_result = {})
      : options_(std::move(options)), fn_(std::move(fn)), on_result_(std::move(on_result)) {
    if (options_.workers == 0) detail::throw_misuse<misuse_error>("goro::worker_pool: zero workers");
    if (options_.queue_capacity == 0) options_.queue_capacity = 2 * options_.workers;
    if (options_.results_capacity == 0) options_.results_capacity = options_.queue_capacity;
    auto [ctx, cancel] = with_cancel(background());
    ctx_ = ctx;
    cancel_ = cancel;
    queue_ = chan<In>(options_.queue_capacity);
    if (!on_result_) results_ = chan<result<Out>>(options_.results_capacity);
    counters_ = std::make_unique<worker_counters[]>(options_.workers);
    exited_.add(static_cast<std::int64_t>(options_.workers));
    for (std::size_t i = 0; i < options_.workers; ++i)
      spawn({.name = options_.name + "-worker-" + std::to_string(i)}, [this, i] { work(counters_[i]); });
  }
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;
  ~worker_pool() { shutdown(std::chrono::milliseconds(0)); }

  // submit() queues item by the pool's overflow policy. With policy block,
  // submit(ctx, item) gives up (canceled) when ctx ends first; a submit
  // blocked when shutdown() starts returns closed.
  submit_status submit(In item) { return submit_to(nullptr, std::move(item)); }
  submit_status submit(const context& ctx, In item) { return submit_to(&ctx, std::move(item)); }

  // results() delivers a result per finished task (when no callback was
  // given). It is closed by shutdown().
  const chan<result<Out>>& results() const noexcept { return results_; }

  // wait() returns when every task accepted so far has finished. With
  // results() and nobody draining it, workers block on it and wait() waits.
  void wait() {
    // seq_cst, with the fence in went_idle(): either the predicate below
    // sees the last task finished, or the worker that goes idle after it
    // sees waiters_ and notifies (under idle_mu_, so not in between).
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    {
      std::unique_lock lock(idle_mu_);
      idle_.wait(lock, [&] { return all_finished(); });
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: a stale count costs one spare notify
  }

  // stats() is a snapshot of the counters (see pool_stats). `queued` counts
  // accepted tasks no worker has taken yet.
  pool_stats stats() const {
    pool_stats s;
    s.workers = options_.workers;
    // Relaxed throughout: each counter is read once, and only its own
    // order matters (see the invariants below).
    for (std::size_t i = 0; i < options_.workers; ++i) {
      const worker_counters& c = counters_[i];
      s.active += c.active.load(std::memory_order_relaxed);
      s.completed += c.completed.load(std::memory_order_relaxed);
      s.failed += c.failed.load(std::memory_order_relaxed);
      s.timed_out += c.timed_out.load(std::memory_order_relaxed);
      s.cancelled += c.cancelled.load(std::memory_order_relaxed);
    }
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.rejected = rejected_.load(std::memory_order_relaxed);
    s.queued = queue_.size();
    return s;
  }

  // shutdown() stops accepting, lets queued and running tasks finish until
  // drain_deadline, then cancels the rest (queued ones are not started) and
  // returns once every worker fiber has exited. Results not yet delivered
  // when the drain deadline passes are dropped if nobody takes them.
  // Idempotent; concurrent callers wait for the first.
  template <class Rep, class Period>
  pool_stats shutdown(std::chrono::duration<Rep, Period> drain_deadline) {
    std::lock_guard once(shutdown_mu_);
    if (shut_down_) return stats();
    closing_.store(true, std::memory_order_relaxed);  // relaxed: see submit_to()
    queue_.close();  // workers drain what is queued, then exit; blocked submitters get closed
    auto [drain, stop_draining] = with_timeout(background(), drain_deadline);
    if (exited_.wait(drain)) {
      // What is still queued is reported cancelled, not started. relaxed:
      // see work().
      cancelling_.store(true, std::memory_order_relaxed);
      cancel_();  // running tasks (and blocked deliveries) see their contexts end
      exited_.wait();
    }
    stop_draining();
    // Every worker has exited (and ended its own context): this only ends
    // ctx_ itself, so nothing derived from the pool's contexts outlives it.
    cancel_();
    if (!on_result_) results_.close();
    shut_down_ = true;
    return stats();  // exact: exited_ ordered every worker's counts before this
  }

 private:
  // Implementation invariants:
  //   * Accepted tasks are the queue's completed sends (chan_core::sent,
  //     counted under the queue's lock), so a submit counts nothing itself.
  //     The pool worker that finishes a task (run or skipped, result
  //     delivered) counts it in its own `finished` (release store), after
  //     its receive, which the send precedes. all_finished() sums every
  //     `finished` first (seq_cst loads), then reads `sent` under the lock:
  //     each finish it saw has its send ordered before that lock, so the
  //     sends it reads include them, and equal counts mean every task
  //     accepted before that moment had finished: wait()'s condition. A
  //     submit that returned before wait() was called is ordered before it.
  //   * running_ counts the workers not idle, an idle one being a worker
  //     that found the queue empty and has not taken a task since. Workers
  //     change it only on that transition (went_idle(), and on taking a
  //     task after it), never on the busy path. The worker that brings it
  //     to 0 has seen the finishes of every other idle worker (the RMWs
  //     form a release sequence), and it alone sums the counters for a
  //     waiting wait(). A task handed to a parked worker that has not yet
  //     counted itself running is in `sent` but not finished, so the sum
  //     is short and that worker checks again when it goes idle.
  //   * counters_[i] belongs to worker fiber i, its only writer: plain
  //     load + store (bump), no read-modify-write and no line shared with
  //     another worker. Each counter only grows and active is 0 or 1, so
  //     sums that one observer reads never go down, and active <= workers.
  //   * A worker counts a task in its slot before it counts it finished
  //     (release): wait() sees the counts of every task it waited for;
  //     shutdown() sees all of them through exited_.
  //   * closing_ is set once, before the queue is closed, and cancelling_
  //     once, before ctx_ is cancelled; both by the shutdown() that holds
  //     shutdown_mu_. shut_down_ is read and written only under shutdown_mu_.
  //     No lock orders a task against them: the queue's close and ctx_'s
  //     cancellation do (see submit_to() and work()).
  //   * Each worker's context is a child of ctx_ that only that worker
  //     copies: an fn that takes it by value touches a refcount no other
  //     worker writes, and per-task contexts (task_timeout only) attach to
  //     the worker's children list, not to a list all workers share.

  // One worker's counters, on a cache line of its own (64: x86-64 and most
  // arm64 cores).
  struct alignas(64) worker_counters {
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> timed_out{0};
    std::atomic<std::uint64_t> cancelled{0};
    std::atomic<std::uint64_t> finished{0};  // ran or skipped, result delivered (see the invariants)
    std::atomic<std::uint32_t> active{0};    // 1 while the worker runs a task
  };

  // Single-writer increment (see the invariants). Relaxed: readers need each
  // counter's own order only; wait() and shutdown() get the rest through
  // `finished` and exited_.
  template <class T>
  static void bump(std::atomic<T>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // submit() for both forms; ctx null: nothing to watch while blocked (a
  // plain send, no select).
  submit_status submit_to(const context* ctx, In&& item) {
    // relaxed: the flag publishes nothing; a submit that misses it meets the
    // closed queue instead (or gets in before the close, and is drained).
    if (closing_.load(std::memory_order_relaxed)) return submit_status::closed;
    submit_status status;
    try {
      if (options_.overflow == overflow_policy::block) {
        if (ctx == nullptr) {
          queue_.send(std::move(item));
          status = submit_status::accepted;
        } else {
          status = queue_.send(*ctx, std::move(item)) == chan_op::ok ? submit_status::accepted : submit_status::canceled;
        }
      } else {
        chan_op r = queue_.try_send(std::move(item));
        status = r == chan_op::ok            ? submit_status::accepted
                 : r == chan_op::closed      ? submit_status::closed
                 : options_.overflow == overflow_policy::drop ? submit_status::dropped
                                                              : submit_status::rejected;
      }
    } catch (const channel_closed&) {
      status = submit_status::closed;  // shutdown closed the queue meanwhile
    }
    if (status != submit_status::accepted) refused(status);
    return status;
  }

  // A submit that was not accepted: count it (it was never sent, so wait()
  // does not count it either).
  [[gnu::noinline]] void refused(submit_status status) {
    // Relaxed: plain event counters, read by stats() one by one.
    if (status == submit_status::dropped) dropped_.fetch_add(1, std::memory_order_relaxed);
    if (status == submit_status::rejected) rejected_.fetch_add(1, std::memory_order_relaxed);
  }

  // A worker found the queue empty: it is idle until it takes a task. The
  // last worker to go idle wakes wait() if every accepted task finished.
  [[gnu::noinline]] void went_idle() {
    if (running_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // Store-load with wait(): the finishes this worker has seen (its own
    // and, through running_, the other idle workers') are ordered before
    // its load of waiters_, and wait()'s add before its sum.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0 && all_finished()) notify_idle();
  }

  // True when every task accepted so far has finished (see the invariants).
  bool all_finished() const noexcept {
    std::uint64_t finished = 0;
    for (std::size_t i = 0; i < options_.workers; ++i) finished += counters_[i].finished.load(std::memory_order_seq_cst);
    auto& queue = *detail::state_of(queue_);
    detail::spin_guard lock(queue.lock);
    return finished == queue.sent;
  }

  [[gnu::noinline]] void notify_idle() {
    { std::lock_guard sync(idle_mu_); }  // a waiter is either before its check or asleep
    idle_.notify_all();
  }

  void work(worker_counters& counters) {
    // The worker's own context (see the invariants).
    const auto [worker_ctx, end_worker_ctx] = with_cancel(ctx_);
    for (;;) {
      // Busy path: take the next task. On an empty queue, go idle first
      // (see the invariants), then wait for one.
      // (Into item: moving an optional out of a try_recv_result copies it
      // as one word right after its parts were stored, a store-forwarding
      // stall per task; see chan::recv().)
      std::optional<In> item;
      if (detail::try_recv_into(queue_, item) != chan_op::ok) {
        went_idle();
        item = queue_.recv();
        if (!item) break;  // closed and drained
        running_.fetch_add(1, std::memory_order_relaxed);  // relaxed: went_idle()'s RMWs order the rest
      }
      // relaxed: the flag publishes nothing. A worker that misses it runs
      // the task under a context that shutdown cancels next (or already
      // has), so the task is still reported cancelled if it is cut short.
      if (cancelling_.load(std::memory_order_relaxed)) [[unlikely]] {
        bump(counters.cancelled);  // never started
        deliver(worker_ctx, result<Out>::failure(make_error(context_errc::canceled)));
      } else if (options_.task_timeout.count() > 0) {
        run_with_timeout(counters, worker_ctx, std::move(*item));
      } else {
        run(counters, worker_ctx, std::move(*item));
      }
      // release: see the invariants.
      counters.finished.store(counters.finished.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    end_worker_ctx();  // detach from ctx_, and end what tasks derived from it
    exited_.done();
  }

  // Runs a task under the worker's context: nothing to create per task.
  [[gnu::always_inline]] void run(worker_counters& counters, const context& worker_ctx, In&& item) {
    counters.active.store(1, std::memory_order_relaxed);  // relaxed: see bump()
    result<Out> r = capture([&] { return fn_(worker_ctx, std::move(item)); });
    count(counters, worker_ctx.err(), r);
    deliver(worker_ctx, std::move(r));
  }

  // Runs a task under a context of its own that ends at its deadline (or
  // with the worker's), and is ended when the task returns.
  [[gnu::noinline]] void run_with_timeout(worker_counters& counters, const context& worker_ctx, In&& item) {
    // (No structured binding: clang 14 cannot capture one in a lambda.)
    const std::pair<context, cancel_func> task = with_timeout(worker_ctx, options_.task_timeout);
    const context& task_ctx = task.first;
    counters.active.store(1, std::memory_order_relaxed);  // relaxed: see bump()
    result<Out> r = capture([&] { return fn_(task_ctx, std::move(item)); });
    std::error_code e = task_ctx.err();
    task.second();
    count(counters, e, r);
    deliver(worker_ctx, std::move(r));
  }

  // Counts a task that ran (e: its context's error as it returned) and
  // marks the worker idle. Inlined: it is a few instructions on the per-task
  // path, the rare case aside.
  [[gnu::always_inline]] static void count(worker_counters& counters, std::error_code e, result<Out>& r) {
    if (e) [[unlikely]]
      cut_short(counters, e, r);
    else
      bump(r.ok() ? counters.completed : counters.failed);
    counters.active.store(0, std::memory_order_relaxed);  // relaxed: see bump()
  }

  // The task's context ended while it ran: however it returned, it was cut
  // short (its value may be partial).
  [[gnu::noinline]] static void cut_short(worker_counters& counters, std::error_code e, result<Out>& r) {
    if (r.ok()) r = result<Out>::failure(make_error(e));
    bump(e == context_errc::deadline_exceeded ? counters.timed_out : counters.cancelled);
  }

  [[gnu::always_inline]] void deliver(const context& worker_ctx, result<Out>&& r) {
    if (on_result_) {
      try {
        on_result_(std::move(r));
      } catch (...) {
        // A throwing callback must not kill the worker (the task was counted).
      }
      return;
    }
    // Room in the buffer: no select needed (try_send moves r only on ok).
    // Else block while undrained: backpressure until shutdown cancels.
    if (results_.try_send(std::move(r)) == chan_op::ok) return;
    (void)results_.send(worker_ctx, std::move(r));
  }

  pool_options options_;
  task_fn fn_;
  result_fn on_result_;
  context ctx_;  // parent of every worker's context; cancelled when the drain deadline passes
  cancel_func cancel_;
  chan<In> queue_;
  chan<result<Out>> results_;
  std::unique_ptr<worker_counters[]> counters_;  // one per worker, indexed like the worker fibers
  wait_group exited_;  // worker fibers still running
  mutex shutdown_mu_;
  bool shut_down_ = false;  // guarded by shutdown_mu_
  mutex idle_mu_;
  condition_variable idle_;  // every submitted task finished
  std::atomic<bool> closing_{false};
  std::atomic<bool> cancelling_{false};
  // Written only on idle transitions and by wait(): on a line of their own,
  // away from the fields above.
  alignas(64) std::atomic<std::size_t> running_{options_.workers};  // workers not idle (see the invariants)
  std::atomic<std::uint32_t> waiters_{0};                            // fibers and threads in wait()
  alignas(64) std::atomic<std::uint64_t> dropped_{0};  // written by refused submits only
  std::atomic<std::uint64_t> rejected_{0};
};

// run_pool() is Go's canonical streaming pool: n fibers take items from in
// and send fn(ctx, item)'s result on the returned channel, which is closed
// once in is closed and drained and every task is done, or once ctx ends
// (items not yet taken are then left in in). Exceptions are captured in the
// results.
template <class In, class Fn>
auto run_pool(const context& ctx, std::size_t n, chan<In> in, Fn fn)
    -> chan<result<std::invoke_result_t<Fn&, context, In>>> {
  using out_t = std::invoke_result_t<Fn&, context, In>;
  chan<result<out_t>> out(n);
  auto done = std::make_shared<wait_group>();
  done->add(static_cast<std::int64_t>(n));
  for (std::size_t i = 0; i < n; ++i) {
    spawn({.name = "run_pool-worker"}, [ctx, in, out, fn, done]() mutable {
      for (;;) {
        auto item = in.recv(ctx);
        if (item.status != chan_op::ok) break;
        // recv(ctx) picks at random when an item and the cancellation are
        // both ready (Go's select does too): never start work for an ended ctx.
        if (ctx.err()) break;
        auto r = capture([&] { return fn(ctx, std::move(*item.value)); });
        if (out.send(ctx, std::move(r)) != chan_op::ok) break;
      }
      done->done();
    });
  }
  spawn({.name = "run_pool-closer"}, [out, done] {
    done->wait();
    out.close();
  });
  return out;
}

}  // namespace goro
