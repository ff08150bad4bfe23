// SPDX-License-Identifier: MIT
// Go's package time for fibers: channels that deliver the time.
//
//   goro::after(d)      a channel that receives the time once, after d
//   goro::timer         one-shot, with stop() and reset()
//   goro::ticker        periodic, drops ticks for a slow receiver
//
// All three run on the runtime's timer heaps (no thread per timer) and need a
// running goro::run(); a plain thread may create them while one runs. Their
// timer is removed as soon as it is stopped or the last handle to the channel
// goes away, so time.After-in-a-loop leaks nothing: pending timers are
// visible in runtime_metrics().pending_timers.
#pragma once

#include "goro/chan.hpp"
#include "goro/detail/chan_core.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/timer_heap.hpp"

#include <chrono>
#include <memory>

namespace goro {

using time_point = std::chrono::steady_clock::time_point;

namespace detail {

// A capacity-1 channel of time points that owns the timer feeding it.
struct timer_chan_state : chan_state<time_point> {
  timer_node node;

  timer_chan_state() : chan_state<time_point>(1) {
    node.context = this;
    node.fire = &fire;
  }
  ~timer_chan_state() { timer_heap::cancel(&node); }

  // Scheduler context: deliver the time unless the buffer is full (a slow
  // receiver of a ticker misses ticks, like Go).
  static void fire(timer_node*, void* context) noexcept {
    auto* self = static_cast<timer_chan_state*>(context);
    time_point now = std::chrono::steady_clock::now();
    bool is_closed = false;
    waiter* to_wake = nullptr;
    self->lock.lock();
    self->try_send_locked(now, is_closed, to_wake);
    self->lock.unlock();
    if (to_wake != nullptr) to_wake->wake();
  }

  void arm(std::chrono::steady_clock::duration d, std::chrono::steady_clock::duration period) {
    node.when = deadline_after(d);
    node.period = period;
    arm_timer(&node);
  }
  // Drops a delivered but unreceived value (Go 1.23 semantics of Stop/Reset).
  void drain() {
    lock.lock();
    std::optional<time_point> dropped;
    bool is_closed = false;
    waiter* none = nullptr;
    try_recv_locked(dropped, is_closed, none);
    lock.unlock();
  }
};

template <class Rep, class Period>
std::chrono::steady_clock::duration to_steady(std::chrono::duration<Rep, Period> d) {
  return saturating_steady(d);
}

}  // namespace detail

template <class T>
class chan;

// timer: a one-shot timer whose channel() receives the time once, after d.
//
// stop() and reset() follow Go 1.23: after they return, no stale time from
// before the call is received.
class timer {
 public:
  template <class Rep, class Period>
  explicit timer(std::chrono::duration<Rep, Period> d) : state_(std::make_shared<detail::timer_chan_state>()) {
    state_->arm(detail::to_steady(d), {});
  }

  const chan<time_point>& channel() const noexcept { return channel_; }

  // stop() prevents the timer from firing. Returns true if it was pending.
  bool stop() {
    bool was_pending = detail::timer_heap::cancel(&state_->node);
    state_->drain();
    return was_pending;
  }
  // reset() re-arms the timer to fire after d. Returns true if it was pending.
  template <class Rep, class Period>
  bool reset(std::chrono::duration<Rep, Period> d) {
    bool was_pending = stop();
    state_->arm(detail::to_steady(d), {});
    return was_pending;
  }

 private:
  std::shared_ptr<detail::timer_chan_state> state_;
  chan<time_point> channel_{detail::adopt_state<time_point>(state_)};
};

// ticker: a channel() that receives the time every period. A receiver that
// falls behind misses ticks instead of queueing them.
class ticker {
 public:
  template <class Rep, class Period>
  explicit ticker(std::chrono::duration<Rep, Period> period) : state_(std::make_shared<detail::timer_chan_state>()) {
    auto p = detail::to_steady(period);
    if (p.count() <= 0) detail::throw_misuse<misuse_error>("goro::ticker: non-positive period");
    state_->arm(p, p);
  }
  ticker(const ticker&) = delete;
  ticker& operator=(const ticker&) = delete;
  ~ticker() { stop(); }

  const chan<time_point>& channel() const noexcept { return channel_; }

  // stop() ends the ticks (no tick from before stop() is received after it).
  void stop() {
    detail::timer_heap::cancel(&state_->node);
    state_->drain();
  }
  // reset() restarts the ticks with a new period.
  template <class Rep, class Period>
  void reset(std::chrono::duration<Rep, Period> period) {
    auto p = detail::to_steady(period);
    if (p.count() <= 0) detail::throw_misuse<misuse_error>("goro::ticker: non-positive period");
    stop();
    state_->arm(p, p);
  }

 private:
  std::shared_ptr<detail::timer_chan_state> state_;
  chan<time_point> channel_{detail::adopt_state<time_point>(state_)};
};

// after() returns a channel that receives the time once, after d (Go's
// time.After). Dropping every handle to the channel removes the timer.
template <class Rep, class Period>
chan<time_point> after(std::chrono::duration<Rep, Period> d) {
  auto state = std::make_shared<detail::timer_chan_state>();
  state->arm(detail::to_steady(d), {});
  return detail::adopt_state<time_point>(std::move(state));
}

}  // namespace goro
