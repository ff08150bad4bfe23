// SPDX-License-Identifier: MIT
// goro::mutex: Go's sync.Mutex for fibers and threads. Satisfies Lockable, so
// std::lock_guard, std::unique_lock and std::scoped_lock work.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <system_error>

namespace goro {

// mutex is a mutual-exclusion lock whose lock() parks the calling fiber
// instead of blocking its worker thread.
//
// State word (state_):
//   bit 0  locked      held by someone
//   bit 1  has_waiters wait queue non-empty; set and cleared under queue_lock_
// Fast path: CAS 0 -> locked. unlock(): clear locked; only when has_waiters
// was set does it take queue_lock_ and wake the first waiter, which then
// competes for the lock again (barging, like Go's normal mode: better
// throughput than direct hand-off). A woken waiter that loses re-queues at
// the front, so it is next again.
//
// Requirements: unlock() only by the holder; not recursive.
// Blocks: lock() parks a fiber or blocks a plain thread.
// Memory ordering: unlock() happens-before the next successful lock().
class mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() {
    std::uint32_t expected = 0;
    if (state_.compare_exchange_weak(expected, locked, std::memory_order_acquire,  // acquire: pairs with unlock()
                                     std::memory_order_relaxed)) {
      note_holder();
      return;
    }
    lock_slow();
    note_holder();
  }
  // lock(ctx) locks like lock() but gives up when ctx is cancelled first:
  // returns an empty error_code when the mutex is now held, else ctx.err().
  template <class Context>
  std::error_code lock(const Context& ctx) {
    if (try_lock()) {
      note_holder();
      return {};
    }
    if (auto e = ctx.err()) return e;
    for (;;) {
      queue_lock_.lock();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if ((s & locked) == 0) {
        bool got = state_.compare_exchange_strong(s, s | locked, std::memory_order_acquire, std::memory_order_relaxed);
        queue_lock_.unlock();
        if (got) {
          note_holder();
          return {};
        }
        continue;
      }
      if ((s & has_waiters) == 0 && !state_.compare_exchange_strong(s, s | has_waiters, std::memory_order_relaxed)) {
        queue_lock_.unlock();
        continue;
      }
      detail::waiter w;
      w.fib = detail::current_fiber();
      waiters_.push_front(&w);
      auto r = detail::block_on_until(queue_lock_, waiters_, w, wait_reason::mutex_lock, detail::steady_time::max(),
                                      ctx.done_core());
      if (r == detail::wait_result::canceled) {
        // We may have been the only waiter: the bit must not stay set for nobody.
        detail::spin_guard lock(queue_lock_);
        if (waiters_.empty()) state_.fetch_and(~has_waiters, std::memory_order_relaxed);
        return ctx.err();
      }
      if (try_lock()) {
        note_holder();
        return {};
      }
    }
  }

  bool try_lock() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & locked) == 0) {
      if (state_.compare_exchange_weak(s, s | locked, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    }
    return false;
  }
  void unlock() {
    std::uint32_t prev = state_.fetch_and(~locked, std::memory_order_release);  // release: pairs with lock()
    if (prev == locked) return;  // no waiters
    unlock_slow();
  }

 private:
  static constexpr std::uint32_t locked = 1;
  static constexpr std::uint32_t has_waiters = 2;

  // Lock diagnostics (run_options::lock_wait_threshold): who holds it. Only
  // recorded while some runtime has them on: one relaxed load otherwise.
  void note_holder() noexcept {
    if (detail::process().lock_diagnostics_runtimes.load(std::memory_order_relaxed) == 0) return;
    detail::fiber* f = detail::current_fiber();
    holder_.store(f != nullptr ? f->id : 0, std::memory_order_relaxed);  // relaxed: diagnostic only
  }
  void report_long_wait(std::int64_t waited_ns) {
    std::uint64_t holder = holder_.load(std::memory_order_relaxed);
    std::fprintf(stderr, "goro: lock wait: %s has waited %lld ms for a goro::mutex held by %s\n",
                 detail::describe_current_fiber().c_str(), static_cast<long long>(waited_ns / 1'000'000),
                 detail::describe_fiber_by_id(holder).c_str());
    if (detail::scheduler* s = detail::current_scheduler()) s->count_lock_wait_report();
  }

  [[gnu::noinline]] void lock_slow() {
    // A short spin first: critical sections are often shorter than a park.
    // Pointless on a single worker, where the holder cannot run meanwhile.
    detail::scheduler* sched = detail::current_scheduler();
    if (sched == nullptr || sched->worker_count() > 1) {
      for (int i = 0; i < 64; ++i) {
        detail::cpu_relax();
        if (try_lock()) return;
      }
    }
    bool requeue_front = false;
    std::int64_t report_after_ns = sched != nullptr ? sched->lock_wait_threshold_ns() : 0;
    const auto wait_start = std::chrono::steady_clock::now();
    for (;;) {
      queue_lock_.lock();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if ((s & locked) == 0) {
        if (state_.compare_exchange_strong(s, s | locked, std::memory_order_acquire, std::memory_order_relaxed)) {
          queue_lock_.unlock();
          return;
        }
        queue_lock_.unlock();
        continue;
      }
      // Announce a waiter while the lock is held: the holder's unlock() then
      // sees has_waiters and takes queue_lock_, which we hold until parked.
      if ((s & has_waiters) == 0 &&
          !state_.compare_exchange_strong(s, s | has_waiters, std::memory_order_relaxed)) {  // relaxed: queue_lock_ orders the rest
        queue_lock_.unlock();
        continue;
      }
      detail::waiter w;
      w.fib = detail::current_fiber();
      if (requeue_front)
        waiters_.push_front(&w);
      else
        waiters_.push_back(&w);
      requeue_front = true;
      if (report_after_ns > 0 && w.fib != nullptr) {
        auto deadline = wait_start + std::chrono::nanoseconds(report_after_ns);
        auto r = detail::block_on_until(queue_lock_, waiters_, w, wait_reason::mutex_lock, deadline);
        if (r == detail::wait_result::timed_out) {
          report_long_wait(report_after_ns);
          report_after_ns = 0;  // once per lock() call
          continue;             // re-queue at the front and keep waiting
        }
      } else {
        detail::block_on(queue_lock_, w, wait_reason::mutex_lock);
      }
      if (try_lock()) return;
    }
  }

  [[gnu::noinline]] void unlock_slow() {
    detail::waiter* w;
    {
      detail::spin_guard lock(queue_lock_);
      w = waiters_.pop_claimed();
      if (waiters_.empty()) state_.fetch_and(~has_waiters, std::memory_order_relaxed);  // relaxed: under queue_lock_
    }
    if (w != nullptr) w->wake();
  }

  std::atomic<std::uint32_t> state_{0};
  std::atomic<std::uint64_t> holder_{0};  // fiber id of the holder, when lock diagnostics are on
  detail::spinlock queue_lock_;
  detail::wait_queue waiters_ GORO_GUARDED_BY(queue_lock_);
};

}  // namespace goro
