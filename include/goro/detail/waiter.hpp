// SPDX-License-Identifier: MIT
// The waiter (Go's sudog): what a blocked fiber or plain thread leaves on a
// primitive's wait queue, and the wait_queue itself (intrusive FIFO with O(1)
// removal, for timeouts and cancellation).
//
// Invariants:
//   * A waiter lives on the blocked party's stack, and is linked into at most
//     one wait_queue; its links and `queued` are guarded by the lock of the
//     primitive that owns that queue.
//   * Whoever unlinks a waiter (under that lock) owns the right to wake it,
//     exactly once. wake() must be the last touch: the waiter may be gone as
//     soon as it returns.
#pragma once

#include "goro/detail/futex.hpp"

#include <atomic>
#include <cstdint>

namespace goro::detail {

struct fiber;
inline void ready(fiber* f);  // scheduler.hpp

// One select statement parked on several queues (Go's selectDone): the first
// waker to CAS `winner` from -1 to its case index owns the wake-up; waiters of
// the other cases are skipped by their queues and removed by the select.
struct select_state {
  std::atomic<int> winner{-1};
  thread_event event;  // a plain thread's select sleeps here
};

class wait_queue;

struct waiter {
  fiber* fib = nullptr;  // null: a plain OS thread, woken through `event` (or sel->event)
  thread_event event;
  waiter* prev = nullptr;
  waiter* next = nullptr;
  bool queued = false;
  // The queue w is linked into (null when not queued). Written under that
  // queue's lock; atomic only so unlink_on_unwind() may test it unlocked,
  // and nulled by ~wait_queue when the primitive dies with w still queued.
  std::atomic<wait_queue*> owner{nullptr};
  void* data = nullptr;        // primitive-specific payload (channels: the element slot)
  std::uint32_t outcome = 0;   // primitive-specific result, written before wake()
  select_state* sel = nullptr; // set when this waiter is one case of a select
  int case_index = -1;

  // Claims the right to wake this waiter: always for a plain waiter; for a
  // select case only if no other case (or its timeout) won first. Called by
  // the waker under the lock of the queue it popped w from.
  bool claim() noexcept {
    if (sel == nullptr) return true;
    int expected = -1;
    return sel->winner.compare_exchange_strong(expected, case_index, std::memory_order_acq_rel);  // acq_rel: one winner; publishes the transfer
  }

  // Any thread. The caller has unlinked and claimed this waiter.
  void wake() noexcept {
    if (fib != nullptr)
      ready(fib);
    else if (sel != nullptr)
      sel->event.notify();
    else
      event.notify();
  }
};

class wait_queue {
 public:
  wait_queue() = default;
  wait_queue(const wait_queue&) = delete;
  wait_queue& operator=(const wait_queue&) = delete;
  // A primitive destroyed with waiters still queued (only possible when run()
  // unwound their fibers at shutdown, or by misuse): forget them, so their
  // unwinding does not touch this queue's (dead) lock.
  ~wait_queue() {
    for (waiter* w = head_; w != nullptr; w = w->next) w->owner.store(nullptr, std::memory_order_release);
  }

  bool empty() const noexcept { return head_ == nullptr; }
  waiter* front() const noexcept { return head_; }

  void push_back(waiter* w) noexcept {
    w->prev = tail_;
    w->next = nullptr;
    if (tail_ != nullptr)
      tail_->next = w;
    else
      head_ = w;
    tail_ = w;
    w->queued = true;
    w->owner.store(this, std::memory_order_relaxed);  // relaxed: the lock orders it
  }
  void push_front(waiter* w) noexcept {
    w->next = head_;
    w->prev = nullptr;
    if (head_ != nullptr)
      head_->prev = w;
    else
      tail_ = w;
    head_ = w;
    w->queued = true;
    w->owner.store(this, std::memory_order_relaxed);  // relaxed: the lock orders it
  }
  waiter* pop_front() noexcept {
    waiter* w = head_;
    if (w != nullptr) remove(w);
    return w;
  }
  // Pops the first waiter that can still be woken, dropping select cases
  // whose select was already won elsewhere (Go's dequeue + selectDone).
  waiter* pop_claimed() noexcept {
    while (waiter* w = pop_front())
      if (w->claim()) return w;
    return nullptr;
  }
  void remove(waiter* w) noexcept {
    if (w->prev != nullptr)
      w->prev->next = w->next;
    else
      head_ = w->next;
    if (w->next != nullptr)
      w->next->prev = w->prev;
    else
      tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->queued = false;
    w->owner.store(nullptr, std::memory_order_relaxed);  // relaxed: the lock orders it
  }

 private:
  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
};

// A fiber blocked at shutdown is destroyed by run() with a forced unwind
// thrown out of park(). Its waiter lives on its stack, so it must leave the
// queue it is still on, or a primitive that outlives run() would later hand
// a value to (and "wake") a dead fiber. `lock` guards w's queue.
template <class Lock>
void unlink_on_unwind(Lock& lock, waiter& w) noexcept {
  if (w.owner.load(std::memory_order_acquire) == nullptr) return;  // popped, or its primitive is gone
  lock.lock();
  if (wait_queue* q = w.owner.load(std::memory_order_relaxed)) q->remove(&w);
  lock.unlock();
}

}  // namespace goro::detail
