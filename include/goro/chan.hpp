// SPDX-License-Identifier: MIT
// goro::chan<T>: Go's channels.
//
//   goro::chan<int> ch;        nil channel: blocks forever, never ready in select
//   goro::chan<int> ch{0};     unbuffered (rendezvous)
//   goro::chan<int> ch{64};    buffered
//   ch.send(v); auto v = ch.recv();  try_send / try_recv; close(); for (auto v : ch)
//   goro::chan_op              ok / would_block / closed (the try_ results)
#pragma once

#include "goro/detail/chan_core.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/errors.hpp"

#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace goro {

enum class chan_op { ok, would_block, closed, canceled };

template <class T>
struct try_recv_result {
  chan_op status = chan_op::would_block;
  std::optional<T> value;  // engaged exactly when status == ok
  explicit operator bool() const noexcept { return status == chan_op::ok; }
};

template <class T>
class chan;

namespace detail {
template <class T>
chan_state<T>* state_of(const chan<T>& ch) noexcept;
// try_recv() into out (empty), without a try_recv_result: see recv().
template <class T>
[[gnu::always_inline]] inline chan_op try_recv_into(const chan<T>& ch, std::optional<T>& out);
// Wraps an existing state (e.g. a timer's channel) in a handle.
template <class T>
chan<T> adopt_state(std::shared_ptr<chan_state<T>> state);
}

// chan<T> is a channel of T: a cheap shared handle (copies refer to the same
// channel). T may be any move-constructible type, move-only included.
//
// Blocks: send() until a receiver takes the value (unbuffered) or there is
//   room (buffered); recv() until a value or close. A fiber parks, a plain
//   thread blocks: fibers and threads may share a channel in any mix.
// Throws: goro::channel_closed from send() on a closed channel (also when the
//   channel is closed while send() waits) and from close() on a closed
//   channel, naming the fiber; goro::misuse_error from close() on a nil
//   channel.
// Closed channels deliver their buffered values, then recv() returns
//   std::nullopt at once, forever.
// Memory ordering: a send happens-before the completion of the receive that
//   gets its value; close() happens-before a receive that sees it closed.
//
// Example:
//   goro::chan<int> results{16};
//   goro::spawn([results] { for (int i = 0; i < 3; ++i) results.send(i); results.close(); });
//   for (int v : results) std::printf("%d\n", v);
template <class T>
class chan {
 public:
  using value_type = T;

  chan() = default;  // the nil channel
  explicit chan(std::size_t capacity) : state_(std::make_shared<detail::chan_state<T>>(capacity)) {}

  // send() delivers v to a receiver or the buffer, waiting as needed.
  void send(T v) const {
    if (!state_) block_forever(wait_reason::chan_send);
    auto& s = *state_;
    bool closed = false;
    detail::waiter* to_wake = nullptr;
    s.lock.lock();
    if (s.try_send_locked(v, closed, to_wake)) {
      s.lock.unlock();
      if (closed) detail::throw_misuse<channel_closed>("send on closed channel");
      if (to_wake != nullptr) to_wake->wake();
      return;
    }
    detail::waiter w;
    w.fib = detail::current_fiber();
    w.data = &v;
    s.sendq.push_back(&w);
    detail::block_on(s.lock, w, wait_reason::chan_send);
    if (w.outcome == detail::outcome_closed) detail::throw_misuse<channel_closed>("send on closed channel");
  }

  // recv() returns the next value, or std::nullopt once the channel is closed
  // and drained.
  //
  // Always inlined, the wait out of line: the result is then built in the
  // caller's frame. Returned in registers instead (an optional<T> of up to
  // 16 bytes), GCC assembles it in memory and loads its 1-byte engaged flag
  // as part of an 8-byte word right after storing it: a store-forwarding
  // stall per receive (a buffered channel drained by 1,000 fibers on 1
  // worker: 22.7 ns per message with it, 10.7 without).
  [[gnu::always_inline]] std::optional<T> recv() const {
    std::optional<T> out;
    recv_into(out);
    return out;
  }

  // Context-aware forms (defined in select.hpp, which this header includes):
  // send(ctx, v) returns ok, or canceled when ctx ends first (v is then
  // dropped); recv(ctx) returns {ok, value}, {closed} or {canceled}.
  // Cancellation: ctx's cancellation wakes them at once. Throws: as send().
  template <class Context>
  chan_op send(const Context& ctx, T v) const;
  template <class Context>
  try_recv_result<T> recv(const Context& ctx) const;

  // try_send() sends without blocking. v is moved from only on ok.
  chan_op try_send(T&& v) const { return try_send_ref(v); }
  chan_op try_send(const T& v) const {
    T copy(v);
    return try_send_ref(copy);
  }

  // try_recv() receives without blocking: {ok, value}, {would_block} or
  // {closed} (closed and drained). Always inlined, like recv().
  [[gnu::always_inline]] try_recv_result<T> try_recv() const {
    try_recv_result<T> result;
    result.status = detail::try_recv_into(*this, result.value);
    return result;
  }

  // close() closes the channel: waiting receivers get std::nullopt, waiting
  // senders throw channel_closed.
  void close() const {
    if (!state_) detail::throw_misuse<misuse_error>("close of nil channel");
    detail::wait_queue to_wake;
    state_->lock.lock();
    bool first = state_->close_locked(to_wake);
    state_->lock.unlock();
    if (!first) detail::throw_misuse<channel_closed>("close of closed channel");
    while (detail::waiter* w = to_wake.pop_front()) w->wake();
  }

  // size() is the number of buffered values (racy: a snapshot).
  std::size_t size() const {
    if (!state_) return 0;
    detail::spin_guard lock(state_->lock);
    return state_->count;
  }
  std::size_t capacity() const noexcept { return state_ ? state_->capacity : 0; }
  // closed() reports whether close() was called (racy: a snapshot).
  bool closed() const {
    if (!state_) return false;
    detail::spin_guard lock(state_->lock);
    return state_->closed;
  }
  bool is_nil() const noexcept { return !state_; }
  explicit operator bool() const noexcept { return static_cast<bool>(state_); }

  friend bool operator==(const chan& a, const chan& b) noexcept { return a.state_ == b.state_; }

  // Range-for receives until the channel is closed and drained.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;

    iterator() = default;
    explicit iterator(const chan* ch) : ch_(ch) { advance(); }
    T& operator*() { return *value_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.ch_ == b.ch_; }

   private:
    void advance() {
      value_.reset();
      ch_->recv_into(value_);
      if (!value_) ch_ = nullptr;
    }
    const chan* ch_ = nullptr;
    std::optional<T> value_;
  };
  iterator begin() const { return iterator(this); }
  iterator end() const { return iterator(); }

 private:
  friend detail::chan_state<T>* detail::state_of<T>(const chan<T>&) noexcept;
  friend chan detail::adopt_state<T>(std::shared_ptr<detail::chan_state<T>>);
  explicit chan(std::shared_ptr<detail::chan_state<T>> state) noexcept : state_(std::move(state)) {}

  // recv() into out, which must be empty: the range-for iterator receives
  // into its own slot this way (assigning it recv()'s result copies the
  // optional as one word right after its parts were stored: the stall
  // above).
  [[gnu::always_inline]] void recv_into(std::optional<T>& out) const {
    if (!state_) block_forever(wait_reason::chan_receive);
    auto& s = *state_;
    bool closed = false;
    detail::waiter* to_wake = nullptr;
    s.lock.lock();
    if (s.try_recv_locked(out, closed, to_wake)) {
      s.lock.unlock();
      if (to_wake != nullptr) to_wake->wake();
    } else {
      wait_to_recv(s, out);
    }
  }

  // recv()'s wait, with the lock held and nothing to take: park until a
  // sender hands a value to out (left empty when woken by close()).
  [[gnu::noinline]] static void wait_to_recv(detail::chan_state<T>& s, std::optional<T>& out) GORO_RELEASE(s.lock) {
    detail::waiter w;
    w.fib = detail::current_fiber();
    w.data = &out;
    s.recvq.push_back(&w);
    detail::block_on(s.lock, w, wait_reason::chan_receive);
  }

  chan_op try_send_ref(T& v) const {
    if (!state_) return chan_op::would_block;
    auto& s = *state_;
    bool closed = false;
    detail::waiter* to_wake = nullptr;
    s.lock.lock();
    bool done = s.try_send_locked(v, closed, to_wake);
    s.lock.unlock();
    if (to_wake != nullptr) to_wake->wake();
    return !done ? chan_op::would_block : closed ? chan_op::closed : chan_op::ok;
  }

  // A nil channel: park forever (reported by the leak checker and the
  // deadlock detector like any other blocked fiber).
  [[noreturn]] static void block_forever(wait_reason reason) {
    detail::block_forever(reason);
  }

  std::shared_ptr<detail::chan_state<T>> state_;
};

namespace detail {
template <class T>
chan_state<T>* state_of(const chan<T>& ch) noexcept {
  return ch.state_.get();
}
template <class T>
chan<T> adopt_state(std::shared_ptr<chan_state<T>> state) {
  return chan<T>(std::move(state));
}
template <class T>
[[gnu::always_inline]] inline chan_op try_recv_into(const chan<T>& ch, std::optional<T>& out) {
  chan_state<T>* s = state_of(ch);
  if (s == nullptr) return chan_op::would_block;
  bool closed = false;
  waiter* to_wake = nullptr;
  s->lock.lock();
  bool done = s->try_recv_locked(out, closed, to_wake);
  s->lock.unlock();
  if (to_wake != nullptr) to_wake->wake();
  return !done ? chan_op::would_block : closed ? chan_op::closed : chan_op::ok;
}
}  // namespace detail

}  // namespace goro

// The context-aware channel operations are selects: see select.hpp.
#include "goro/select.hpp"
