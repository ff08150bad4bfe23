// SPDX-License-Identifier: MIT
// goro::shared_mutex: Go's sync.RWMutex for fibers and threads. Satisfies
// SharedLockable: std::shared_lock and std::unique_lock work.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"

#include <cstdint>
#include <mutex>
#include <shared_mutex>  // std::shared_lock, for users

namespace goro {

// shared_mutex: many readers or one writer.
//
// Fairness: writer-preferring, like Go: once a writer waits, new readers
//   queue behind it, so writers are not starved. Ownership is handed over
//   directly to waiters (the lock state is updated on their behalf).
// Blocks: parks a fiber (or blocks a plain thread).
// Memory ordering: unlock() happens-before the next lock()/lock_shared();
//   unlock_shared() happens-before the next lock().
class shared_mutex {
 public:
  shared_mutex() = default;
  shared_mutex(const shared_mutex&) = delete;
  shared_mutex& operator=(const shared_mutex&) = delete;

  void lock() {
    lock_.lock();
    if (!writer_ && readers_ == 0) {
      writer_ = true;
      lock_.unlock();
      return;
    }
    detail::waiter w;
    w.fib = detail::current_fiber();
    writers_waiting_.push_back(&w);
    detail::block_on(lock_, w, wait_reason::mutex_lock);  // woken as the owner
  }
  bool try_lock() {
    detail::spin_guard guard(lock_);
    if (writer_ || readers_ != 0) return false;
    writer_ = true;
    return true;
  }
  void unlock() {
    detail::wait_queue woken;
    {
      detail::spin_guard guard(lock_);
      writer_ = false;
      // Readers that queued behind this writer go first, then the next writer.
      if (!readers_waiting_.empty()) {
        while (detail::waiter* r = readers_waiting_.pop_claimed()) {
          ++readers_;
          woken.push_back(r);
        }
      } else if (detail::waiter* next = writers_waiting_.pop_claimed()) {
        writer_ = true;
        woken.push_back(next);
      }
    }
    while (detail::waiter* w = woken.pop_front()) w->wake();
  }

  void lock_shared() {
    lock_.lock();
    if (!writer_ && writers_waiting_.empty()) {
      ++readers_;
      lock_.unlock();
      return;
    }
    detail::waiter w;
    w.fib = detail::current_fiber();
    readers_waiting_.push_back(&w);
    detail::block_on(lock_, w, wait_reason::mutex_lock);  // woken holding a read share
  }
  bool try_lock_shared() {
    detail::spin_guard guard(lock_);
    if (writer_ || !writers_waiting_.empty()) return false;
    ++readers_;
    return true;
  }
  void unlock_shared() {
    detail::waiter* next = nullptr;
    {
      detail::spin_guard guard(lock_);
      if (readers_ == 0) {
        detail::throw_misuse<misuse_error>("goro::shared_mutex: unlock_shared() without a shared lock");
      }
      if (--readers_ == 0) {
        next = writers_waiting_.pop_claimed();
        if (next != nullptr) writer_ = true;
      }
    }
    if (next != nullptr) next->wake();
  }

 private:
  detail::spinlock lock_;
  bool writer_ GORO_GUARDED_BY(lock_) = false;
  std::int64_t readers_ GORO_GUARDED_BY(lock_) = 0;
  detail::wait_queue readers_waiting_ GORO_GUARDED_BY(lock_);
  detail::wait_queue writers_waiting_ GORO_GUARDED_BY(lock_);
};

}  // namespace goro
