// SPDX-License-Identifier: MIT
// goro::condition_variable: Go's sync.Cond with std::condition_variable_any's
// interface. Works with goro::mutex (or any BasicLockable), from fibers and
// plain threads.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace goro {

// condition_variable lets fibers wait until notified.
//
// Blocks: wait() releases the lock, parks the fiber (or blocks the thread),
//   and re-acquires the lock before returning. Spurious wake-ups do not
//   happen, but use the predicate forms anyway: another waker may change the
//   state before the woken fiber re-acquires the lock.
// Timeouts: wait_for/wait_until use the runtime's timers (no thread sleeps);
//   a timed-out waiter leaves no timer behind.
// Memory ordering: a notify happens-before the return of the wait it wakes.
class condition_variable {
 public:
  condition_variable() = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  template <class Lock>
  void wait(Lock& lock) {
    detail::waiter w;
    w.fib = detail::current_fiber();
    queue_lock_.lock();
    waiters_.push_back(&w);
    // Unlock after queueing: a notify() that follows our unlock finds us.
    lock.unlock();
    detail::block_on(queue_lock_, w, wait_reason::cond_wait);
    lock.lock();
  }
  template <class Lock, class Predicate>
  void wait(Lock& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }

  template <class Lock, class Clock, class Duration>
  std::cv_status wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t) {
    auto deadline = detail::deadline_after(t - Clock::now());
    detail::waiter w;
    w.fib = detail::current_fiber();
    queue_lock_.lock();
    waiters_.push_back(&w);
    lock.unlock();
    auto result = detail::block_on_until(queue_lock_, waiters_, w, wait_reason::cond_wait, deadline);
    lock.lock();
    return result == detail::wait_result::woken ? std::cv_status::no_timeout : std::cv_status::timeout;
  }
  template <class Lock, class Clock, class Duration, class Predicate>
  bool wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t, Predicate pred) {
    while (!pred()) {
      if (wait_until(lock, t) == std::cv_status::timeout) return pred();
    }
    return true;
  }
  template <class Lock, class Rep, class Period>
  std::cv_status wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d) {
    return wait_until(lock, detail::deadline_after(d));
  }
  template <class Lock, class Rep, class Period, class Predicate>
  bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
    return wait_until(lock, detail::deadline_after(d), std::move(pred));
  }

  void notify_one() {
    detail::waiter* w;
    {
      detail::spin_guard lock(queue_lock_);
      w = waiters_.pop_claimed();
    }
    if (w != nullptr) w->wake();
  }
  void notify_all() {
    detail::wait_queue woken;
    {
      detail::spin_guard lock(queue_lock_);
      while (detail::waiter* w = waiters_.pop_claimed()) woken.push_back(w);
    }
    while (detail::waiter* w = woken.pop_front()) w->wake();
  }

 private:
  detail::spinlock queue_lock_;
  detail::wait_queue waiters_ GORO_GUARDED_BY(queue_lock_);
};

}  // namespace goro
