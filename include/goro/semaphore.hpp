// SPDX-License-Identifier: MIT
// goro::semaphore: a weighted semaphore (Go's x/sync/semaphore): FIFO, and
// context-aware.
#pragma once

#include "goro/context.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"

#include <cstdint>
#include <system_error>

namespace goro {

// semaphore limits access to a resource of `size` units; acquire(n) takes n.
//
// Fairness: FIFO. A request that does not fit blocks every later request,
//   even small ones that would fit, so large requests are never starved.
// Blocks: acquire() parks a fiber (or blocks a plain thread).
// Cancellation: acquire(ctx, n) returns ctx.err() when ctx ends first, with
//   nothing acquired.
// Throws: goro::misuse_error when n > size (can never succeed) or on
//   release() of more than is held.
// Memory ordering: release() happens-before the acquire() it satisfies.
class semaphore {
 public:
  explicit semaphore(std::int64_t size) : size_(size) {}
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  void acquire(std::int64_t n = 1) { (void)acquire(background(), n); }

  std::error_code acquire(const context& ctx, std::int64_t n = 1) {
    if (n > size_) detail::throw_misuse<misuse_error>("goro::semaphore: acquire of more than the semaphore's size");
    lock_.lock();
    if (size_ - used_ >= n && waiters_.empty()) {
      used_ += n;
      lock_.unlock();
      return {};
    }
    if (auto e = ctx.err()) {
      lock_.unlock();
      return e;
    }
    detail::waiter w;
    w.fib = detail::current_fiber();
    w.data = &n;
    waiters_.push_back(&w);
    auto r = detail::block_on_until(lock_, waiters_, w, wait_reason::semaphore, detail::steady_time::max(),
                                    ctx.done_core());
    if (r == detail::wait_result::canceled) {
      // We may have been the front request holding the others back.
      detail::wait_queue woken;
      {
        detail::spin_guard lock(lock_);
        grant_locked(woken);
      }
      wake(woken);
      return ctx.err();
    }
    return {};
  }

  bool try_acquire(std::int64_t n = 1) {
    detail::spin_guard lock(lock_);
    if (size_ - used_ >= n && waiters_.empty()) {
      used_ += n;
      return true;
    }
    return false;
  }

  void release(std::int64_t n = 1) {
    detail::wait_queue woken;
    {
      detail::spin_guard lock(lock_);
      if (n > used_) {
        detail::throw_misuse<misuse_error>("goro::semaphore: released more than held");
      }
      used_ -= n;
      grant_locked(woken);
    }
    wake(woken);
  }

  std::int64_t size() const noexcept { return size_; }
  // in_use() is the number of units held (racy: a snapshot).
  std::int64_t in_use() {
    detail::spin_guard lock(lock_);
    return used_;
  }

 private:
  // Grants front requests in order while they fit; stops at the first that
  // does not (FIFO). Skips requests whose wait was already ended by their
  // context (claimed elsewhere).
  void grant_locked(detail::wait_queue& woken) GORO_REQUIRES(lock_) {
    while (detail::waiter* w = waiters_.front()) {
      std::int64_t n = *static_cast<std::int64_t*>(w->data);
      if (w->sel != nullptr && w->sel->winner.load(std::memory_order_acquire) >= 0) {
        waiters_.remove(w);  // cancelled: its owner finds it unlinked
        continue;
      }
      if (size_ - used_ < n) break;
      waiters_.remove(w);
      if (!w->claim()) continue;  // cancellation won the race
      used_ += n;
      woken.push_back(w);
    }
  }
  static void wake(detail::wait_queue& woken) {
    while (detail::waiter* w = woken.pop_front()) w->wake();
  }

  const std::int64_t size_;
  detail::spinlock lock_;
  std::int64_t used_ GORO_GUARDED_BY(lock_) = 0;
  detail::wait_queue waiters_ GORO_GUARDED_BY(lock_);
};

}  // namespace goro
