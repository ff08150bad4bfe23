// SPDX-License-Identifier: MIT
// The global run queue: moodycamel's lock-free MPMC queue holds fibers that
// overflowed a local queue and fibers made runnable by threads that are not
// workers of this scheduler. The only file that includes moodycamel.
#pragma once

#include <atomic>
#include <concurrentqueue/concurrentqueue.h>
#include <cstddef>
#include <cstdint>

namespace goro::detail {

struct fiber;

class global_queue {
 public:
  void push(fiber* f) {
    queue_.enqueue(f);
    size_.fetch_add(1, std::memory_order_release);  // release: pairs with acquire in empty()
  }
  void push_bulk(fiber* const* fibers, std::size_t n) {
    queue_.enqueue_bulk(fibers, n);
    size_.fetch_add(static_cast<std::int64_t>(n), std::memory_order_release);
  }
  fiber* pop() {
    fiber* f = nullptr;
    return pop_bulk(&f, 1) == 1 ? f : nullptr;
  }
  // Takes up to max fibers into out; returns how many. One call moves a
  // batch, so a worker fed by another worker's overflow pays the queue's
  // shared cache lines once per batch, not once per fiber (Go's globrunqget).
  std::size_t pop_bulk(fiber** out, std::size_t max) {
    if (size_.load(std::memory_order_acquire) <= 0) return 0;  // acquire: pairs with push
    std::size_t n = queue_.try_dequeue_bulk(out, max);
    if (n != 0) size_.fetch_sub(static_cast<std::int64_t>(n), std::memory_order_relaxed);  // relaxed: as in pop()
    return n;
  }
  // Approximate; exact once all pushers and poppers are quiet.
  std::int64_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  bool empty() const noexcept { return size() <= 0; }

 private:
  moodycamel::ConcurrentQueue<fiber*> queue_;
  std::atomic<std::int64_t> size_{0};
};

}  // namespace goro::detail
