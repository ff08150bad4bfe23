// SPDX-License-Identifier: MIT
// Linux futex wait/wake on a 32-bit atomic. Used to park OS threads: idle
// workers (detail/parker.hpp) and plain threads that block on goro primitives.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace goro::detail {

// Blocks while *word == expected, until woken or the absolute steady-clock
// deadline passes (time_point::max() = no deadline). Spurious returns happen:
// callers re-check their condition.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       std::chrono::steady_clock::time_point deadline =
                           std::chrono::steady_clock::time_point::max()) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr,
            nullptr, 0);
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (deadline <= now) return;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr,
          0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int count = 1) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr,
          0);
}

// A one-shot event for one waiting OS thread: notify() may come before wait().
class thread_event {
 public:
  void wait() noexcept {
    while (state_.load(std::memory_order_acquire) == 0) futex_wait(state_, 0);  // acquire: pairs with notify()
  }
  // Returns false when the deadline passed before notify().
  bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept {
    while (state_.load(std::memory_order_acquire) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      futex_wait(state_, 0, deadline);
    }
    return true;
  }
  void notify() noexcept {
    state_.store(1, std::memory_order_release);  // release: publishes the waker's writes to wait()
    futex_wake(state_);
  }
  bool notified() const noexcept { return state_.load(std::memory_order_acquire) != 0; }

 private:
  std::atomic<std::uint32_t> state_{0};
};

}  // namespace goro::detail
