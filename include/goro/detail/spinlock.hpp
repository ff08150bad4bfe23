// SPDX-License-Identifier: MIT
// TTAS spinlock for very short critical sections (a few loads and stores:
// queue links, heap sift). Never held across a fiber switch by the fiber that
// took it, except where park() hands it to the scheduler to release after the
// switch (see park() in detail/scheduler.hpp). Satisfies Lockable, so std::lock_guard works.
#pragma once

#include "goro/detail/tsa.hpp"

#include <atomic>
#include <thread>

namespace goro::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class GORO_CAPABILITY("mutex") spinlock {
 public:
  void lock() noexcept GORO_ACQUIRE() {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;  // acquire: pairs with release in unlock()
    lock_slow();
  }
  bool try_lock() noexcept GORO_TRY_ACQUIRE(true) {
    return !locked_.load(std::memory_order_relaxed) &&  // relaxed: only a hint before the exchange
           !locked_.exchange(true, std::memory_order_acquire);
  }
  // One exchange, no test first: for a caller that expects the lock to be
  // free (a load first costs a little when it is).
  bool try_lock_expecting_free() noexcept GORO_TRY_ACQUIRE(true) {
    return !locked_.exchange(true, std::memory_order_acquire);  // acquire: pairs with release in unlock()
  }
  void unlock() noexcept GORO_RELEASE() {
    locked_.store(false, std::memory_order_release);  // release: pairs with acquire in lock()
  }

 private:
  // Contended path: exponential backoff, then test-and-test-and-set.
  // Backing off after a lost exchange lets the holder keep the cache line
  // and run several critical sections in a row, where waiters that retry at
  // once make every critical section pay a line transfer between cores
  // (buffered MPMC on 2 workers: 85 -> 16 ns per message; bench/RESULTS.md).
  // Backoff starts at 64 pauses and doubles to 1024 (a pause is 10-30 ns on
  // the x86 machines we measured); past ~4k pauses the waiter yields the
  // core, because the holder may be a preempted OS thread. The long first
  // backoff is deliberate: when two cores hammer one channel, letting one of
  // them run alone for a microsecond or two beats sharing the line (2
  // workers, against 16/256: pool 60 -> 46 ns per task, select over 4
  // 94-144 -> 70-106 ns per message, MPMC 4x4 -20%; ping-pong, mutex,
  // wait_group and timers unchanged; bench/RESULTS.md).
  [[gnu::noinline]] void lock_slow() noexcept {
    constexpr unsigned first_backoff = 64, max_backoff = 1024, spins_before_yield = 4096;
    unsigned backoff = first_backoff;
    for (unsigned spins = 0;;) {
      for (unsigned i = 0; i < backoff; ++i) cpu_relax();
      spins += backoff;
      if (backoff < max_backoff) backoff <<= 1;
      while (locked_.load(std::memory_order_relaxed)) {  // relaxed: test before test-and-set
        if (spins < spins_before_yield) {
          cpu_relax();
          ++spins;
        } else {
          std::this_thread::yield();
        }
      }
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }

  std::atomic<bool> locked_{false};
};

// std::lock_guard for a spinlock, visible to clang's thread-safety analysis
// (libstdc++'s guards carry no annotations).
class GORO_SCOPED_CAPABILITY spin_guard {
 public:
  explicit spin_guard(spinlock& lock) noexcept GORO_ACQUIRE(lock) : lock_(lock) { lock_.lock(); }
  ~spin_guard() GORO_RELEASE() { lock_.unlock(); }
  spin_guard(const spin_guard&) = delete;
  spin_guard& operator=(const spin_guard&) = delete;

 private:
  spinlock& lock_;
};

}  // namespace goro::detail
