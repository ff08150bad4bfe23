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
  void unlock() noexcept GORO_RELEASE() {
    locked_.store(false, std::memory_order_release);  // release: pairs with acquire in lock()
  }

 private:
  [[gnu::noinline]] void lock_slow() noexcept {
    for (unsigned spins = 0;; ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {  // relaxed: test before test-and-set
        if (spins++ < 128) {
          cpu_relax();
        } else {
          // The holder may be a preempted OS thread: give it the core.
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
