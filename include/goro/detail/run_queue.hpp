// SPDX-License-Identifier: MIT
// A worker's local run queue: a bounded single-producer multi-consumer ring
// plus the runnext slot. Learned from Go proc.go runqput/runqget/runqgrab
// (and boost.fiber context_spmc_queue.hpp, Chase-Lev): the owner pushes at
// tail and pops at head; thieves grab half from head with a CAS.
//
// Invariants:
//   * push()/pop()/push_runnext() are called only by the owner worker's thread.
//   * steal_half_into() is called by any other worker; it CASes head_, so a
//     fiber is taken by exactly one consumer.
//   * tail_ is written only by the owner; head_ only by CAS.
//   * runnext_ is owned by the owner; thieves take it only with exchange.
#pragma once

#include "goro/config.hpp"

#include <atomic>
#include <cstdint>

namespace goro::detail {

struct fiber;

class run_queue {
 public:
  static constexpr std::uint32_t capacity = GORO_RUN_QUEUE_SIZE;

  // Owner only. Returns false when full (the caller moves half to the global
  // queue, see scheduler::push_local_slow).
  bool push(fiber* f) noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);  // acquire: pairs with CAS release in pop/steal (slots free)
    std::uint32_t tail = tail_.load(std::memory_order_relaxed);  // relaxed: only the owner writes tail_
    if (tail - head >= capacity) return false;
    slots_[tail % capacity].store(f, std::memory_order_relaxed);  // relaxed: published by the tail store below
    tail_.store(tail + 1, std::memory_order_release);              // release: publishes the slot to consumers
    return true;
  }

  // Owner only: the fiber k places behind the head, or null. A hint for
  // prefetching only: a thief may take it meanwhile.
  fiber* peek(std::uint32_t k) const noexcept {
    std::uint32_t head = head_.load(std::memory_order_relaxed);  // relaxed: a hint
    std::uint32_t tail = tail_.load(std::memory_order_relaxed);  // relaxed: only the owner writes tail_
    if (tail - head <= k) return nullptr;
    return slots_[(head + k) % capacity].load(std::memory_order_relaxed);  // relaxed: never dereferenced
  }

  // Owner only: pop from head (FIFO; LIFO locality comes from runnext).
  fiber* pop() noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);  // acquire: pairs with thieves' CAS
    for (;;) {
      std::uint32_t tail = tail_.load(std::memory_order_relaxed);  // relaxed: only the owner writes tail_
      if (tail == head) return nullptr;
      fiber* f = slots_[head % capacity].load(std::memory_order_relaxed);  // relaxed: validated by the CAS
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_release,  // release: hands the slot back
                                      std::memory_order_acquire))
        return f;
    }
  }

  // Owner only: takes up to n fibers from head into out (for the overflow
  // move to the global queue). Returns how many, 0 when a thief got there.
  std::uint32_t grab(fiber** out, std::uint32_t n) noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);
    std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head < n) return 0;
    for (std::uint32_t i = 0; i < n; ++i) out[i] = slots_[(head + i) % capacity].load(std::memory_order_relaxed);
    if (!head_.compare_exchange_strong(head, head + n, std::memory_order_release, std::memory_order_relaxed))
      return 0;
    return n;
  }

  // Another worker: moves half of this queue (at least one fiber) into dst,
  // the caller's own queue, as far as dst has room. Returns one fiber to run
  // right away (not put in dst), or nullptr.
  fiber* steal_half_into(run_queue& dst, bool take_runnext) noexcept {
    // Owner's view of its own queue: only thieves shrink it meanwhile.
    const std::uint32_t dst_room =
        capacity - (dst.tail_.load(std::memory_order_relaxed) - dst.head_.load(std::memory_order_acquire));
    for (;;) {
      std::uint32_t head = head_.load(std::memory_order_acquire);  // acquire: pairs with consumers' CAS
      std::uint32_t tail = tail_.load(std::memory_order_acquire);  // acquire: pairs with owner's release in push
      std::uint32_t n = tail - head;
      n = n - n / 2;
      if (n > dst_room + 1 && n <= capacity / 2) n = dst_room + 1;  // one runs at once, the rest must fit
      if (n == 0) {
        if (!take_runnext) return nullptr;
        // Only the hand-off slot is left. Take it: its owner is busy running
        // the fiber that readied it, and we are idle.
        if (runnext_.load(std::memory_order_relaxed) == nullptr) return nullptr;  // relaxed: a hint
        return runnext_.exchange(nullptr, std::memory_order_acquire);           // acquire: pairs with release in push_runnext
      }
      if (n > capacity / 2) continue;  // read an inconsistent head/tail pair: retry
      fiber* batch[capacity / 2];
      for (std::uint32_t i = 0; i < n; ++i) batch[i] = slots_[(head + i) % capacity].load(std::memory_order_relaxed);
      if (!head_.compare_exchange_weak(head, head + n, std::memory_order_release,  // release: slots may be reused
                                       std::memory_order_relaxed))
        continue;
      // At most dst_room fibers go to dst: these owner pushes cannot fail.
      for (std::uint32_t i = 1; i < n; ++i) dst.push(batch[i]);
      return batch[0];
    }
  }

  // Owner only: puts f in the runnext slot and returns the fiber it displaced
  // (the caller pushes that one to the queue tail).
  fiber* push_runnext(fiber* f) noexcept {
    return runnext_.exchange(f, std::memory_order_acq_rel);  // release: publishes f to thieves; acquire: pairs with their exchange
  }
  fiber* pop_runnext() noexcept {
    if (runnext_.load(std::memory_order_relaxed) == nullptr) return nullptr;  // relaxed: the owner's own hint
    return runnext_.exchange(nullptr, std::memory_order_acquire);
  }

  // Any thread; approximate.
  std::uint32_t size() const noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);
    std::uint32_t tail = tail_.load(std::memory_order_acquire);
    return tail - head + (runnext_.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  alignas(64) std::atomic<fiber*> runnext_{nullptr};
  std::atomic<fiber*> slots_[capacity] = {};
};

}  // namespace goro::detail
