// SPDX-License-Identifier: MIT
// goro::worker_pool<In, Out>: the bounded worker pool that survives what kills
// naive pools: overload, shutdown, slow tasks, throwing tasks and leaks.
//
//   goro::worker_pool<job, reply> pool({.workers = 8, .overflow = goro::overflow_policy::reject,
//                                       .task_timeout = 100ms, .name = "resize"},
//                                      [](goro::context ctx, job j) { return handle(ctx, j); });
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
#include "goro/detail/spinlock.hpp"
#include "goro/errors.hpp"
#include "goro/mutex.hpp"
#include "goro/result.hpp"
#include "goro/select.hpp"
#include "goro/spawn.hpp"
#include "goro/wait_group.hpp"

#include <algorithm>
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

// A consistent snapshot of a pool's counters (taken under one lock).
struct pool_stats {
  std::size_t workers = 0;
  std::size_t active = 0;       // tasks running now
  std::size_t queued = 0;       // accepted, not started
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
// Shutdown: shutdown(d) stops accepting, lets queued and running tasks
//   finish until d, then cancels the rest through their contexts (queued
//   tasks are not started; all are reported as cancelled). It returns once
//   every worker has exited: no fiber is left behind. The destructor calls
//   shutdown(0) if needed.
// Thread-safety: submit, stats, wait and shutdown may be called from any
//   fiber or plain thread.
template <class In, class Out>
class worker_pool {
 public:
  using task_fn = std::function<Out(context, In)>;
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
    exited_.add(static_cast<std::int64_t>(options_.workers));
    for (std::size_t i = 0; i < options_.workers; ++i)
      spawn({.name = options_.name + "-worker-" + std::to_string(i)}, [this] { work(); });
  }
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;
  ~worker_pool() { shutdown(std::chrono::milliseconds(0)); }

  // submit() queues item by the pool's overflow policy. With policy block,
  // submit(ctx, item) gives up (canceled) when ctx ends first; a submit
  // blocked when shutdown() starts returns closed.
  submit_status submit(In item) { return submit(background(), std::move(item)); }
  submit_status submit(const context& ctx, In item) {
    {
      detail::spin_guard lock(lock_);
      if (closing_) return submit_status::closed;
      ++outstanding_;  // optimistic: wait() must not return while this may still be accepted
    }
    submit_status status;
    try {
      if (options_.overflow == overflow_policy::block) {
        status = queue_.send(ctx, std::move(item)) == chan_op::ok ? submit_status::accepted : submit_status::canceled;
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
    bool idle = false;
    {
      detail::spin_guard lock(lock_);
      switch (status) {
        case submit_status::accepted: ++accepted_; break;
        case submit_status::dropped: ++stats_.dropped; break;
        case submit_status::rejected: ++stats_.rejected; break;
        default: break;
      }
      if (status != submit_status::accepted) idle = --outstanding_ == 0;
    }
    if (idle) notify_idle();
    return status;
  }

  // results() delivers a result per finished task (when no callback was
  // given). It is closed by shutdown().
  const chan<result<Out>>& results() const noexcept { return results_; }

  // wait() returns when every task accepted so far has finished. With
  // results() and nobody draining it, workers block on it and wait() waits.
  void wait() {
    std::unique_lock lock(idle_mu_);
    idle_.wait(lock, [&] {
      detail::spin_guard guard(lock_);
      return outstanding_ == 0;
    });
  }

  // stats() is a consistent snapshot (one lock). `queued` counts accepted
  // tasks no worker has taken yet.
  pool_stats stats() {
    detail::spin_guard lock(lock_);
    return snapshot();
  }

  // shutdown() stops accepting, lets queued and running tasks finish until
  // drain_deadline, then cancels the rest (queued ones are not started) and
  // returns once every worker fiber has exited. Results not yet delivered
  // when the drain deadline passes are dropped if nobody takes them.
  // Idempotent; concurrent callers wait for the first.
  template <class Rep, class Period>
  pool_stats shutdown(std::chrono::duration<Rep, Period> drain_deadline) {
    std::lock_guard once(shutdown_mu_);
    {
      detail::spin_guard lock(lock_);
      if (shut_down_) return snapshot();
      closing_ = true;
    }
    queue_.close();  // workers drain what is queued, then exit; blocked submitters get closed
    auto [drain, stop_draining] = with_timeout(background(), drain_deadline);
    if (exited_.wait(drain)) {
      {
        detail::spin_guard lock(lock_);
        cancelling_ = true;  // what is still queued is reported cancelled, not started
      }
      cancel_();  // running tasks (and blocked deliveries) see their contexts end
      exited_.wait();
    }
    stop_draining();
    if (!on_result_) results_.close();
    detail::spin_guard lock(lock_);
    shut_down_ = true;
    return snapshot();
  }

 private:
  pool_stats snapshot() GORO_REQUIRES(lock_) {
    pool_stats s = stats_;
    s.workers = options_.workers;
    // accepted_ - started_ also counts tasks a worker has just taken off the
    // queue but not yet started (at most one per worker): report what the
    // queue can hold, not more.
    s.queued = std::min(static_cast<std::size_t>(accepted_ > started_ ? accepted_ - started_ : 0),
                        options_.queue_capacity);
    return s;
  }

  void notify_idle() {
    { std::lock_guard sync(idle_mu_); }  // a waiter is either before its check or asleep
    idle_.notify_all();
  }

  enum class outcome { completed, failed, timed_out, cancelled };

  void work() {
    while (auto item = queue_.recv()) {
      bool skip;
      {
        detail::spin_guard lock(lock_);
        ++started_;
        skip = cancelling_;
        if (!skip) ++stats_.active;
      }
      result<Out> r;
      outcome kind = outcome::completed;
      if (skip) {
        r = result<Out>::failure(make_error(context_errc::canceled));
        kind = outcome::cancelled;
      } else {
        // (No structured binding: clang 14 cannot capture one in a lambda.)
        std::pair<context, cancel_func> task = options_.task_timeout.count() > 0
                                                   ? with_timeout(ctx_, options_.task_timeout)
                                                   : with_cancel(ctx_);
        const context& task_ctx = task.first;
        const cancel_func& task_cancel = task.second;
        r = capture([&] { return fn_(task_ctx, std::move(*item)); });
        std::error_code e = task_ctx.err();
        task_cancel();
        if (e) {
          // The context ended while the task ran: however it returned, it
          // was cut short (its value may be partial).
          kind = e == context_errc::deadline_exceeded ? outcome::timed_out : outcome::cancelled;
          if (r.ok()) r = result<Out>::failure(make_error(e));
        } else if (!r.ok()) {
          kind = outcome::failed;
        }
      }
      {
        detail::spin_guard lock(lock_);
        if (!skip) --stats_.active;
        switch (kind) {
          case outcome::completed: ++stats_.completed; break;
          case outcome::failed: ++stats_.failed; break;
          case outcome::timed_out: ++stats_.timed_out; break;
          case outcome::cancelled: ++stats_.cancelled; break;
        }
      }
      deliver(std::move(r));
      bool idle;
      {
        detail::spin_guard lock(lock_);
        idle = --outstanding_ == 0;
      }
      if (idle) notify_idle();
    }
    exited_.done();
  }

  void deliver(result<Out> r) {
    if (on_result_) {
      try {
        on_result_(std::move(r));
      } catch (...) {
        // A throwing callback must not kill the worker (the task was counted).
      }
      return;
    }
    (void)results_.send(ctx_, std::move(r));  // blocks while undrained: backpressure until shutdown cancels
  }

  pool_options options_;
  task_fn fn_;
  result_fn on_result_;
  context ctx_;  // parent of every task's context; cancelled when the drain deadline passes
  cancel_func cancel_;
  chan<In> queue_;
  chan<result<Out>> results_;
  wait_group exited_;  // worker fibers still running
  mutex shutdown_mu_;
  mutex idle_mu_;
  condition_variable idle_;  // outstanding_ reached zero
  detail::spinlock lock_;
  pool_stats stats_ GORO_GUARDED_BY(lock_);
  std::uint64_t accepted_ GORO_GUARDED_BY(lock_) = 0;
  std::uint64_t started_ GORO_GUARDED_BY(lock_) = 0;
  std::uint64_t outstanding_ GORO_GUARDED_BY(lock_) = 0;  // submitted or accepted, not finished
  bool closing_ GORO_GUARDED_BY(lock_) = false;
  bool cancelling_ GORO_GUARDED_BY(lock_) = false;
  bool shut_down_ GORO_GUARDED_BY(lock_) = false;
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
