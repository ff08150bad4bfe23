// SPDX-License-Identifier: MIT
// goro::once: Go's sync.Once for fibers and threads.
#pragma once

#include "goro/mutex.hpp"

#include <atomic>
#include <mutex>

namespace goro {

// once runs a function exactly once; concurrent callers park until it has
// returned. As in Go, a call that throws still counts as the one call: the
// exception propagates to its caller and later calls do nothing.
// Memory ordering: the function's return happens-before every call() returns.
class once {
 public:
  template <class Fn>
  void call(Fn&& fn) {
    if (done_.load(std::memory_order_acquire)) return;  // acquire: pairs with the release below
    std::lock_guard lock(mu_);
    if (done_.load(std::memory_order_relaxed)) return;
    struct mark_done {
      std::atomic<bool>& done;
      ~mark_done() { done.store(true, std::memory_order_release); }
    } marker{done_};
    fn();
  }
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> done_{false};
  mutex mu_;
};

}  // namespace goro
