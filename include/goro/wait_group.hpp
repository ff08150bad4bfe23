// SPDX-License-Identifier: MIT
// goro::wait_group: Go's sync.WaitGroup. Waits for a collection of fibers
// (or threads) to finish.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"

#include <atomic>
#include <climits>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>

namespace goro {

// wait_group counts outstanding work: add(n) before starting n tasks, done()
// as each finishes, wait() until the count is zero.
//
// Requirements: the count must never go negative; add() with a positive n
//   while the count is zero must happen before the wait() it is meant to
//   delay. A wait_group may be reused once every wait() of the previous round
//   has returned.
// Blocks: wait() parks a fiber (not its worker) or blocks a plain thread;
//   fibers and threads may mix freely on one wait_group.
// Throws: goro::misuse_error from add()/done() when the count would go
//   negative, naming the fiber.
// Memory ordering: every done() happens-before the return of each wait() it
//   releases.
//
// Example:
//   goro::wait_group wg;
//   for (auto& job : jobs) {
//     wg.add(1);
//     goro::spawn([&] { job.run(); wg.done(); });
//   }
//   wg.wait();
//
// A whole cache line to itself: every done() is a locked add on state_, from
// whichever worker runs the fiber, and a wait group usually sits in its
// owner's stack frame or struct beside data the owner writes all the time.
// Sharing that line cost a transfer each way per done(): spawn+join on 2
// workers 142 -> 127 ns per fiber with the padding (bench/RESULTS.md, session 9).
class alignas(64) wait_group {
 public:
  wait_group() = default;
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  void add(std::int64_t n) {
    if (n > INT32_MAX || n < -static_cast<std::int64_t>(INT32_MAX))
      detail::throw_misuse<misuse_error>("goro::wait_group: add() delta out of range");
    const std::uint64_t delta = static_cast<std::uint64_t>(n) << 32;
    // acq_rel: release publishes this party's work to the waiter that sees
    // zero; acquire chains the earlier done()s when we are the one to wake.
    const std::uint64_t state = state_.fetch_add(delta, std::memory_order_acq_rel) + delta;
    const std::int32_t count = counter_of(state);
    if (count < 0) {
      state_.fetch_sub(delta, std::memory_order_relaxed);  // relaxed: undo of a misuse
      detail::throw_misuse<misuse_error>("goro::wait_group: negative counter (done() called more times than add())");
    }
    // Nobody registered: do not touch *this again. A wait() that sees zero
    // may return and its owner destroy the group right now (Go's rule).
    if (count > 0 || waiters_of(state) == 0) return;
    // Registered waiters cannot return until woken, so *this is alive.
    wake_all();
  }
  void done() { add(-1); }

  // wait() returns once the count is zero.
  void wait() {
    if (counter_of(state_.load(std::memory_order_acquire)) == 0) return;  // acquire: pairs with add()'s release
    detail::waiter w;
    w.fib = detail::current_fiber();
    lock_.lock();
    if (!register_waiter()) {
      lock_.unlock();
      return;
    }
    waiters_.push_back(&w);
    detail::block_on(lock_, w, wait_reason::wait_group);
  }

  // wait(ctx) waits like wait() but returns ctx.err() as soon as ctx is
  // cancelled; an empty error_code once the count reached zero.
  template <class Context>
  std::error_code wait(const Context& ctx) {
    if (counter_of(state_.load(std::memory_order_acquire)) == 0) return {};
    if (auto e = ctx.err()) return e;
    detail::waiter w;
    w.fib = detail::current_fiber();
    lock_.lock();
    if (!register_waiter()) {
      lock_.unlock();
      return {};
    }
    waiters_.push_back(&w);
    bool self_unlinked = false;
    auto r = detail::block_on_until(lock_, waiters_, w, wait_reason::wait_group, detail::steady_time::max(),
                                    ctx.done_core(), &self_unlinked);
    if (self_unlinked) {
      // We left the queue ourselves: take our registration back (else the
      // waker that popped us already did).
      detail::spin_guard lock(lock_);
      state_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: under lock_, like every waiter-count change
    }
    return r == detail::wait_result::canceled ? ctx.err() : std::error_code{};
  }

  // count() is the current count (racy; for diagnostics).
  std::int64_t count() const noexcept { return counter_of(state_.load(std::memory_order_relaxed)); }

 private:
  // state_: the counter in the high 32 bits, registered waiters in the low
  // 32 bits (Go's layout). Waiters register and queue under lock_, so a
  // waker that saw waiters > 0 finds every one of them queued.
  static std::int32_t counter_of(std::uint64_t state) noexcept { return static_cast<std::int32_t>(state >> 32); }
  static std::uint32_t waiters_of(std::uint64_t state) noexcept { return static_cast<std::uint32_t>(state); }

  // Under lock_: counts us as a waiter unless the counter is already zero.
  bool register_waiter() GORO_REQUIRES(lock_) {
    std::uint64_t state = state_.load(std::memory_order_acquire);
    for (;;) {
      if (counter_of(state) == 0) return false;
      if (state_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
  }

  [[gnu::noinline]] void wake_all() GORO_EXCLUDES(lock_) {
    detail::wait_queue woken;
    {
      detail::spin_guard lock(lock_);
      std::uint32_t popped = 0;
      while (detail::waiter* w = waiters_.pop_front()) {
        ++popped;
        if (w->claim()) woken.push_back(w);  // a waiter whose context won is skipped (not woken twice)
      }
      state_.fetch_sub(popped, std::memory_order_relaxed);  // relaxed: under lock_
    }
    // *this may be destroyed as soon as the last waiter runs: from here on
    // only the waiters (alive until woken) are touched.
    while (detail::waiter* w = woken.pop_front()) w->wake();
  }

  std::atomic<std::uint64_t> state_{0};
  detail::spinlock lock_;
  detail::wait_queue waiters_ GORO_GUARDED_BY(lock_);
};

}  // namespace goro
