// SPDX-License-Identifier: MIT
// goro::wait_group: Go's sync.WaitGroup. Waits for a collection of fibers
// (or threads) to finish.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"

#include <atomic>
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
class wait_group {
 public:
  wait_group() = default;
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  void add(std::int64_t n) {
    // acq_rel: release publishes this party's work to the waiter that sees
    // zero; acquire chains the earlier done()s when we are the one to wake.
    std::int64_t v = count_.fetch_add(n, std::memory_order_acq_rel) + n;
    if (v > 0) return;
    if (v < 0) {
      count_.fetch_sub(n, std::memory_order_relaxed);  // relaxed: undo of a misuse
      detail::throw_misuse<misuse_error>("goro::wait_group: negative counter (done() called more times than add())");
    }
    wake_all();
  }
  void done() { add(-1); }

  // wait() returns once the count is zero.
  void wait() {
    if (count_.load(std::memory_order_acquire) == 0) return;  // acquire: pairs with add()'s release
    detail::waiter w;
    w.fib = detail::current_fiber();
    lock_.lock();
    if (count_.load(std::memory_order_acquire) == 0) {  // zero reached before we queued: wake_all() saw no one
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
    if (count_.load(std::memory_order_acquire) == 0) return {};
    if (auto e = ctx.err()) return e;
    detail::waiter w;
    w.fib = detail::current_fiber();
    lock_.lock();
    if (count_.load(std::memory_order_acquire) == 0) {
      lock_.unlock();
      return {};
    }
    waiters_.push_back(&w);
    auto r = detail::block_on_until(lock_, waiters_, w, wait_reason::wait_group, detail::steady_time::max(),
                                    ctx.done_core());
    return r == detail::wait_result::canceled ? ctx.err() : std::error_code{};
  }

  // count() is the current count (racy; for diagnostics).
  std::int64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  [[gnu::noinline]] void wake_all() GORO_EXCLUDES(lock_) {
    detail::wait_queue woken;
    {
      detail::spin_guard lock(lock_);
      while (detail::waiter* w = waiters_.pop_claimed()) woken.push_back(w);
    }
    while (detail::waiter* w = woken.pop_front()) w->wake();
  }

  std::atomic<std::int64_t> count_{0};
  detail::spinlock lock_;
  detail::wait_queue waiters_ GORO_GUARDED_BY(lock_);
};

}  // namespace goro
