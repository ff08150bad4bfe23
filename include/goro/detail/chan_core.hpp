// SPDX-License-Identifier: MIT
// The channel implementation (Go's chan.go): a type-independent core (lock,
// wait queues, closed flag, ring indices) plus a typed ring in
// chan_state<T>. chan<T> (chan.hpp) is a shared handle to a chan_state<T>.
//
// Invariants (all guarded by chan_core::lock):
//   * At most one of recvq/sendq holds claimable waiters: a receiver only
//     queues when the buffer is empty and no sender waits, and vice versa.
//   * count > 0 implies no claimable receiver waits; count < capacity implies
//     no claimable sender waits (a buffered channel only blocks at its ends).
//   * A waiter's data points into its owner's frame: a receiver's
//     std::optional<T> slot, or a sender's T. The waker transfers the value
//     under the lock, writes outcome, unlocks, then wake()s: the owner never
//     reads its slot before it has been woken.
//   * closed never goes back to false. close() wakes every waiter with
//     outcome closed: receivers then return nullopt, senders throw.
#pragma once

#include "goro/detail/spinlock.hpp"
#include "goro/detail/tsa.hpp"
#include "goro/detail/waiter.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <utility>

namespace goro::detail {

enum : std::uint32_t { outcome_pending = 0, outcome_done = 1, outcome_closed = 2 };

struct chan_core {
  explicit chan_core(std::size_t cap) : capacity(cap) {}

  spinlock lock;
  wait_queue recvq GORO_GUARDED_BY(lock);
  wait_queue sendq GORO_GUARDED_BY(lock);
  const std::size_t capacity;
  std::size_t count GORO_GUARDED_BY(lock) = 0;  // buffered elements
  std::size_t head GORO_GUARDED_BY(lock) = 0;   // ring index of the oldest
  bool closed GORO_GUARDED_BY(lock) = false;
  // Sends completed since the channel was made (buffered or handed to a
  // receiver): worker_pool's wait() counts accepted tasks by it, so that a
  // submit costs no counter of its own. One increment on a line the lock
  // holder already owns.
  std::uint64_t sent GORO_GUARDED_BY(lock) = 0;

  // Ring index i positions after `from` (i <= capacity): a compare instead
  // of a division, which costs more than the rest of a buffered receive.
  std::size_t ring_index(std::size_t from, std::size_t i) const noexcept {
    std::size_t at = from + i;
    return at >= capacity ? at - capacity : at;
  }

  // Marks the channel closed and returns every waiter to wake (outcome
  // closed), linked through a local queue. Returns false if already closed.
  bool close_locked(wait_queue& to_wake) GORO_REQUIRES(lock) {
    if (closed) return false;
    closed = true;
    while (waiter* w = recvq.pop_claimed()) {
      w->outcome = outcome_closed;
      to_wake.push_back(w);
    }
    while (waiter* w = sendq.pop_claimed()) {
      w->outcome = outcome_closed;
      to_wake.push_back(w);
    }
    return true;
  }
};

template <class T>
class chan_state : public chan_core {
 public:
  explicit chan_state(std::size_t cap) : chan_core(cap), ring_(cap != 0 ? std::allocator<T>().allocate(cap) : nullptr) {}
  chan_state(const chan_state&) = delete;
  chan_state& operator=(const chan_state&) = delete;
  ~chan_state() GORO_NO_TSA {
    for (std::size_t i = 0; i < count; ++i) std::destroy_at(ring_ + ring_index(head, i));
    if (ring_ != nullptr) std::allocator<T>().deallocate(ring_, capacity);
  }

  // Receives without blocking, under lock. Returns true when the receive
  // completed: out holds a value, or `closed_out` is set (closed and
  // drained). A sender whose value moved into the ring or into out is
  // returned in to_wake (the caller wakes it after unlocking).
  bool try_recv_locked(std::optional<T>& out, bool& closed_out, waiter*& to_wake) GORO_REQUIRES(lock) {
    if (count > 0) {
      T* slot = ring_ + head;
      out.emplace(std::move(*slot));
      std::destroy_at(slot);
      head = ring_index(head, 1);
      --count;
      // A sender blocked on the full buffer moves its value to the tail.
      if (waiter* s = sendq.pop_claimed()) {
        std::construct_at(ring_ + ring_index(head, count), std::move(*static_cast<T*>(s->data)));
        ++count;
        ++sent;
        s->outcome = outcome_done;
        to_wake = s;
      }
      return true;
    }
    if (waiter* s = sendq.pop_claimed()) {  // unbuffered: take straight from the sender
      out.emplace(std::move(*static_cast<T*>(s->data)));
      ++sent;
      s->outcome = outcome_done;
      to_wake = s;
      return true;
    }
    if (closed) {
      closed_out = true;
      return true;
    }
    return false;
  }

  // Sends without blocking, under lock. Returns true when the send completed
  // (value moved out of v) or the channel is closed (closed_out set; v
  // untouched). A receiver that got the value is returned in to_wake.
  bool try_send_locked(T& v, bool& closed_out, waiter*& to_wake) GORO_REQUIRES(lock) {
    if (closed) {
      closed_out = true;
      return true;
    }
    if (waiter* r = recvq.pop_claimed()) {  // hand the value straight to a waiting receiver
      static_cast<std::optional<T>*>(r->data)->emplace(std::move(v));
      ++sent;
      r->outcome = outcome_done;
      to_wake = r;
      return true;
    }
    if (count < capacity) {
      std::construct_at(ring_ + ring_index(head, count), std::move(v));
      ++count;
      ++sent;
      return true;
    }
    return false;
  }

 private:
  T* const ring_;  // capacity slots; [head, head + count) mod capacity are alive
};

}  // namespace goro::detail
