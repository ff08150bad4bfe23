// SPDX-License-Identifier: MIT
// goro::blocking(fn): run a call that blocks its OS thread (a DNS lookup, a
// file read, a C library without non-blocking mode) without blocking a worker.
//
//   auto addr = goro::blocking([&] { return resolve(host); });          // parks this fiber only
//   goro::result<std::string> r = goro::blocking(ctx, [path] { return slurp(path); });
//
// The call runs on an elastic thread pool owned by the runtime (Go's
// entersyscall hands the P to another M; we hand the call to another thread):
// threads are created on demand up to GORO_BLOCKING_MAX_THREADS, and one that
// has been idle for the keep-alive (GORO_BLOCKING_KEEP_ALIVE_MS) retires.
// Design notes: docs/io.md.
#pragma once

#include "goro/context.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/result.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef GORO_BLOCKING_MAX_THREADS
#define GORO_BLOCKING_MAX_THREADS 256  // calls beyond this many at once queue
#endif
#ifndef GORO_BLOCKING_KEEP_ALIVE_MS
#define GORO_BLOCKING_KEEP_ALIVE_MS 10000  // an idle pool thread retires after this long
#endif

namespace goro {

// Counters of the blocking() pools of every running runtime. Any thread.
struct blocking_stats {
  std::size_t threads = 0;        // pool threads alive now (running a call or idle)
  std::size_t idle_threads = 0;   // of which idle, waiting for a call
  std::size_t in_flight = 0;      // calls submitted and not finished (running or queued)
  std::uint64_t threads_started = 0;  // since the runtime started
  std::uint64_t threads_retired = 0;  // idle past the keep-alive (or stopped at shutdown)
};

namespace detail {

// The pool. Invariants (all guarded by mu_):
//   * in_flight_ counts submitted calls whose task has not returned; queue_
//     holds the ones no thread has taken yet.
//   * Idle threads wait each on their own slot in idle_stack_, the most
//     recently idle on top. A submit hands its call to the top one (LIFO:
//     the warmest thread runs it, and threads at the bottom stay idle long
//     enough to retire after a burst; a shared condition variable would wake
//     them round-robin and keep every one of them alive), or starts a thread
//     (below the cap) when none is idle, so a call never waits behind a
//     running one while the cap allows another thread.
//   * Threads are detached; shutdown() waits until threads_ is 0, and a
//     thread touches nothing of the pool after it has decremented threads_
//     and released mu_.
class blocking_pool final : public runtime_service {
 public:
  struct task {
    virtual ~task() = default;
    virtual void run() noexcept = 0;
  };

  explicit blocking_pool(scheduler&) {}
  ~blocking_pool() override { shutdown(); }
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;

  // Runs t on a pool thread. Throws std::system_error if no thread can be
  // started and none is alive to run it.
  void submit(std::unique_ptr<task> t) {
    std::unique_lock lock(mu_);
    queue_.push_back(std::move(t));
    ++in_flight_;
    if (!idle_stack_.empty()) {
      idle_slot* top = idle_stack_.back();
      idle_stack_.pop_back();
      top->signalled = true;
      top->cv.notify_one();
      return;
    }
    if (threads_ >= max_threads) return;  // a running thread takes it when done
    ++threads_;
    ++started_;
    try {
      std::thread([this] { thread_main(); }).detach();
    } catch (...) {
      --threads_;
      --started_;
      if (threads_ == 0) {  // nobody will ever take it
        queue_.pop_back();
        --in_flight_;
        throw;
      }
      // The running threads will get to it.
    }
  }

  // Lets queued and running calls finish, then waits for every thread to
  // exit. Idempotent. Called by run() after the workers stopped.
  void shutdown() noexcept override {
    std::unique_lock lock(mu_);
    stopping_ = true;
    for (idle_slot* slot : idle_stack_) slot->cv.notify_one();
    exit_cv_.wait(lock, [this] { return threads_ == 0; });
  }

  blocking_stats stats() {
    std::lock_guard lock(mu_);
    return blocking_stats{threads_, idle_, in_flight_, started_, retired_};
  }

  // The idle time after which a pool thread retires (all pools; tests
  // shorten it to see threads retire).
  static std::atomic<std::int64_t>& keep_alive_ms() noexcept {
    static std::atomic<std::int64_t> ms{GORO_BLOCKING_KEEP_ALIVE_MS};
    return ms;
  }
  static constexpr std::size_t max_threads = GORO_BLOCKING_MAX_THREADS;

 private:
  void thread_main() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        if (stopping_) break;
        idle_slot slot;
        idle_stack_.push_back(&slot);
        ++idle_;
        const auto keep_alive =
            std::chrono::milliseconds(keep_alive_ms().load(std::memory_order_relaxed));  // relaxed: a setting
        const bool woken = slot.cv.wait_for(lock, keep_alive, [&] { return slot.signalled || stopping_; });
        --idle_;
        if (!slot.signalled)  // still on the stack (timed out, or stopping): take it off
          idle_stack_.erase(std::find(idle_stack_.begin(), idle_stack_.end(), &slot));
        if (!woken) break;  // idle for the keep-alive: retire
        continue;
      }
      std::unique_ptr<task> t = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      t->run();  // readies the waiting fiber, if it still waits
      t.reset();
      lock.lock();
      --in_flight_;
    }
    --threads_;
    ++retired_;
    exit_cv_.notify_all();  // under mu_: shutdown() cannot return (and free us) before we unlock
  }

  // An idle thread's wake-up slot; lives on that thread's stack.
  struct idle_slot {
    std::condition_variable cv;
    bool signalled = false;  // guarded by mu_: a submit popped this slot for a call
  };

  std::mutex mu_;
  std::vector<idle_slot*> idle_stack_;  // guarded by mu_; most recently idle at the back
  std::condition_variable exit_cv_;
  std::deque<std::unique_ptr<task>> queue_;
  std::size_t threads_ = 0;
  std::size_t idle_ = 0;
  std::size_t in_flight_ = 0;
  std::uint64_t started_ = 0;
  std::uint64_t retired_ = 0;
  bool stopping_ = false;
};

// One blocking() call: the outcome, set once by the pool thread, and the
// caller's waiter. Shared: a caller whose context ended returns early and
// the call finishes into a state nobody reads.
template <class T>
struct blocking_call_state {
  spinlock lock;
  bool done GORO_GUARDED_BY(lock) = false;
  result<T> outcome GORO_GUARDED_BY(lock);
  wait_queue waiters GORO_GUARDED_BY(lock);

  void finish(result<T> r) {
    waiter* w;
    {
      spin_guard guard(lock);
      outcome = std::move(r);
      done = true;
      w = waiters.pop_claimed();
    }
    if (w != nullptr) w->wake();
  }
};

template <class T, class Call>
struct blocking_task final : blocking_pool::task {
  blocking_task(std::shared_ptr<blocking_call_state<T>> s, Call c) : state(std::move(s)), call(std::move(c)) {}
  void run() noexcept override { state->finish(capture(call)); }
  std::shared_ptr<blocking_call_state<T>> state;
  Call call;
};

// Submits call and parks the calling fiber until it finished or done closed
// (then canceled is set and the result is empty). Fiber only.
template <class T, class Call>
result<T> run_blocking(scheduler& sched, Call call, chan_core* done, bool& canceled) GORO_NO_TSA {
  blocking_pool* pool = sched.service<blocking_pool>();
  if (pool == nullptr) return capture(call);  // shutting down: cannot happen on a live fiber
  auto state = std::make_shared<blocking_call_state<T>>();
  pool->submit(std::make_unique<blocking_task<T, Call>>(state, std::move(call)));
  wait_result r = wait_result::woken;
  state->lock.lock();
  if (state->done) {
    state->lock.unlock();  // finished already: nothing to wait for
  } else {
    waiter w;
    w.fib = current_fiber();
    state->waiters.push_back(&w);
    external_wait_scope open(sched);
    r = block_on_until(state->lock, state->waiters, w, wait_reason::blocking_call, steady_time::max(), done);
  }
  canceled = r == wait_result::canceled;
  if (canceled) return result<T>{};
  spin_guard guard(state->lock);
  return std::move(state->outcome);
}

}  // namespace detail

// blocking() runs fn() on the runtime's blocking thread pool and parks the
// calling fiber until it returns. Returns fn's result; rethrows its exception.
// Called from a plain thread (not a fiber), it just calls fn() inline.
//
// Requirements: fn must not touch the calling fiber's goro primitives in a
//   way that needs the calling fiber to run (it is parked); it may use
//   channels and other primitives like any plain thread.
// Blocks: the calling fiber only; its worker runs other fibers meanwhile.
// Shutdown: run() returns only after every in-flight blocking() call has
//   finished (a thread cannot be killed).
// Memory ordering: everything before the call happens-before fn runs, and
//   everything fn did happens-before blocking() returns.
template <class Fn>
auto blocking(Fn&& fn) -> std::invoke_result_t<Fn&> {
  using value_t = std::invoke_result_t<Fn&>;
  static_assert(!std::is_reference_v<value_t>, "goro::blocking: fn must return a value, not a reference");
  detail::fiber* f = detail::current_fiber();
  if (f == nullptr) return fn();
  // The caller waits until fn returned: fn may be used by reference.
  auto call = [&fn]() -> value_t { return fn(); };
  bool canceled = false;
  result<value_t> r = detail::run_blocking<value_t>(*f->sched, std::move(call), nullptr, canceled);
  if constexpr (std::is_void_v<value_t>)
    r.value();
  else
    return std::move(r).value();
}

// blocking(ctx, fn) is blocking(fn) that returns as soon as ctx ends: the
// result then holds ctx.err() as a std::system_error (as future::get(ctx)
// reports it). fn keeps running on its thread (it cannot be killed) and its
// result is dropped; fn is copied (or moved) into the pool for that reason,
// so it must own what it uses or outlive it. If ctx has already ended, fn is
// not started. A plain thread calls fn() inline and ignores ctx after that.
template <class Fn>
auto blocking(const context& ctx, Fn&& fn) -> result<std::invoke_result_t<std::decay_t<Fn>&>> {
  using value_t = std::invoke_result_t<std::decay_t<Fn>&>;
  static_assert(!std::is_reference_v<value_t>, "goro::blocking: fn must return a value, not a reference");
  if (auto err = ctx.err()) return result<value_t>::failure(make_error(err));
  detail::fiber* f = detail::current_fiber();
  if (f == nullptr) return capture(fn);
  bool canceled = false;
  result<value_t> r = detail::run_blocking<value_t>(*f->sched, std::decay_t<Fn>(std::forward<Fn>(fn)),
                                                     ctx.done_core(), canceled);
  if (canceled) return result<value_t>::failure(make_error(ctx.err()));
  return r;
}

// blocking_stats() sums the blocking() pools of every running runtime.
inline blocking_stats blocking_pool_stats() {
  blocking_stats sum;
  std::lock_guard lock(detail::process().mu);
  for (detail::scheduler* s : detail::process().schedulers)
    if (auto* pool = s->service<detail::blocking_pool>(false)) {
      blocking_stats one = pool->stats();
      sum.threads += one.threads;
      sum.idle_threads += one.idle_threads;
      sum.in_flight += one.in_flight;
      sum.threads_started += one.threads_started;
      sum.threads_retired += one.threads_retired;
    }
  return sum;
}

}  // namespace goro
