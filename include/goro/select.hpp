// SPDX-License-Identifier: MIT
// goro::select: Go's select statement.
//
//   int taken = goro::select(
//       goro::on_recv(jobs, [&](std::optional<job> j) { ... }),   // nullopt: jobs closed
//       goro::on_send(out, value, [&] { ... }),
//       goro::on_timeout(100ms, [&] { ... }),
//       goro::on_default([&] { ... }));                            // never blocks
//
// Implementation (learned from Go's select.go selectgo):
//   pass 1: poll the cases in a random order and take the first that is
//           ready: the choice among ready cases is uniform. Over several
//           channels, first each channel under its own lock (1a); if none
//           is ready, lock every channel once, in address order (so two
//           selects over the same channels in opposite order cannot
//           deadlock), and poll again (1b) before queueing.
//   pass 2: nothing ready and no default: queue one waiter per channel case,
//           all sharing a select_state; arm the timeout; park, and let the
//           worker unlock the channels after the switch.
//   pass 3: woken by exactly one case (the first waker to CAS the winner;
//           queues skip the losing waiters) or by the timeout: lock the
//           channels again, unlink the waiters still queued, cancel the
//           timer. No waiter and no timer outlives the select.
#pragma once

#include "goro/chan.hpp"
#include "goro/detail/chan_core.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/errors.hpp"

#include <algorithm>
#include <array>
#include <bitset>
#include <functional>
#include <chrono>
#include <cstddef>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace goro {

namespace detail {

enum class case_kind { recv, send, timeout, fallback };

struct no_action {
  template <class... Args>
  void operator()(Args&&...) const noexcept {}
};

template <class T, class Fn>
struct recv_case {
  static constexpr case_kind kind = case_kind::recv;
  chan_state<T>* state;
  Fn fn;
  std::optional<T> slot;

  chan_core* core() const noexcept { return state; }
  wait_queue& queue() GORO_NO_TSA { return state->recvq; }
  void* slot_address() noexcept { return &slot; }
  bool try_locked(bool& closed, waiter*& to_wake) GORO_NO_TSA {
    return state->try_recv_locked(slot, closed, to_wake);
  }
  void complete(bool /*closed*/) {
    if constexpr (std::is_invocable_v<Fn&, std::optional<T>>)
      fn(std::move(slot));
    else
      fn();
  }
};

template <class T, class Fn>
struct send_case {
  static constexpr case_kind kind = case_kind::send;
  chan_state<T>* state;
  T value;
  Fn fn;

  chan_core* core() const noexcept { return state; }
  wait_queue& queue() GORO_NO_TSA { return state->sendq; }
  void* slot_address() noexcept { return &value; }
  bool try_locked(bool& closed, waiter*& to_wake) GORO_NO_TSA {
    return state->try_send_locked(value, closed, to_wake);
  }
  void complete(bool closed) {
    if (closed) throw_misuse<channel_closed>("send on closed channel (in select)");
    fn();
  }
};

template <class Fn>
struct timeout_case {
  static constexpr case_kind kind = case_kind::timeout;
  std::chrono::steady_clock::duration after;
  Fn fn;
  chan_core* core() const noexcept { return nullptr; }
  void complete(bool) { fn(); }
};

template <class Fn>
struct default_case {
  static constexpr case_kind kind = case_kind::fallback;
  Fn fn;
  chan_core* core() const noexcept { return nullptr; }
  void complete(bool) { fn(); }
};

// Per-thread random for select's poll order: a worker's generator on a
// worker, a thread_local one on a plain thread (no switch happens inside).
inline std::uint32_t select_random() noexcept {
  thread_local std::uint64_t state = 0x853c49e6748fea9bULL ^ reinterpret_cast<std::uintptr_t>(&state);
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return static_cast<std::uint32_t>((state * 0x2545F4914F6CDD1DULL) >> 32);
}

// The channels of one select, each locked once, in address order.
template <std::size_t N>
struct select_locks {
  std::array<spinlock*, N> locks{};
  std::size_t n = 0;
  timer_node* timer = nullptr;  // armed after the switch, when parking

  void add(chan_core* c) {
    if (c == nullptr) return;
    spinlock* l = &c->lock;
    if (std::find(locks.begin(), locks.begin() + n, l) == locks.begin() + n) locks[n++] = l;
  }
  // Insertion sort: a select has a handful of channels.
  void sort() {
    for (std::size_t i = 1; i < n; ++i) {
      spinlock* l = locks[i];
      std::size_t j = i;
      for (; j > 0 && std::less<spinlock*>()(l, locks[j - 1]); --j) locks[j] = locks[j - 1];
      locks[j] = l;
    }
  }
  void lock_all() GORO_NO_TSA {
    for (std::size_t i = 0; i < n; ++i) locks[i]->lock();
  }
  void unlock_all() noexcept GORO_NO_TSA {
    for (std::size_t i = n; i-- > 0;) locks[i]->unlock();
  }
  static void arm_and_unlock(void* arg) noexcept {
    // Copy first: once the timer is armed it may fire on another worker and
    // the woken fiber may leave the frame that holds *self.
    select_locks copy = *static_cast<select_locks*>(arg);
    if (copy.timer != nullptr) add_timer_on_current_worker(copy.timer);
    copy.unlock_all();
  }
};

template <class Tuple, class Fn, std::size_t... I>
void for_each_case(Tuple& t, Fn&& fn, std::index_sequence<I...>) {
  (fn(std::get<I>(t), std::integral_constant<std::size_t, I>{}), ...);
}

template <class Tuple, class Fn, std::size_t... I>
void visit_case(Tuple& t, std::size_t index, Fn&& fn, std::index_sequence<I...>) {
  ((index == I ? (fn(std::get<I>(t)), 0) : 0), ...);
}

template <class... Cases>
int select_impl(Cases&... cases) {
  constexpr std::size_t n = sizeof...(Cases);
  auto all = std::tie(cases...);
  constexpr auto indices = std::index_sequence_for<Cases...>{};

  // Case facts, type-erased for the loops below.
  std::array<chan_core*, n> cores{};
  std::array<case_kind, n> kinds{};
  int default_index = -1;
  int timeout_index = -1;
  std::chrono::steady_clock::duration timeout{};
  for_each_case(
      all,
      [&](auto& c, auto i) {
        cores[i] = c.core();
        kinds[i] = c.kind;
        if constexpr (std::remove_reference_t<decltype(c)>::kind == case_kind::fallback) default_index = static_cast<int>(i);
        if constexpr (std::remove_reference_t<decltype(c)>::kind == case_kind::timeout) {
          // Several timeouts: the earliest wins.
          if (timeout_index < 0 || c.after < timeout) {
            timeout_index = static_cast<int>(i);
            timeout = c.after;
          }
        }
      },
      indices);

  // Pass 1: poll in random order.
  std::array<std::uint8_t, n> order{};
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint8_t>(i);
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[select_random() % i]);

  int taken = -1;
  bool closed = false;
  waiter* to_wake = nullptr;
  // Polls the cases in `order`, returning after the first that completes.
  // each_if_free: lock each case's channel around its poll only, but skip
  // (and note in skipped) a channel whose lock is taken; skipped_only: lock
  // and poll only the channels the last each_if_free poll skipped; held:
  // the caller holds every lock.
  enum class poll_locking { each_if_free, skipped_only, held };
  std::bitset<n> skipped;  // the cases an each_if_free poll passed over
  auto poll = [&](poll_locking how) GORO_NO_TSA {
    for (std::size_t k = 0; k < n && taken < 0; ++k) {
      std::size_t i = order[k];
      if (cores[i] == nullptr) continue;
      if (how == poll_locking::skipped_only && !skipped[i]) continue;
      visit_case(
          all, i,
          [&](auto& c) GORO_NO_TSA {
            if constexpr (std::remove_reference_t<decltype(c)>::kind == case_kind::recv ||
                          std::remove_reference_t<decltype(c)>::kind == case_kind::send) {
              if (how == poll_locking::each_if_free) {
                if (!c.core()->lock.try_lock_expecting_free()) {
                  skipped.set(i);
                  return;
                }
              } else if (how == poll_locking::skipped_only) {
                c.core()->lock.lock();
              }
              if (c.try_locked(closed, to_wake)) taken = static_cast<int>(i);
              if (how != poll_locking::held) c.core()->lock.unlock();
            }
          },
          indices);
    }
  };
  auto finish_ready = [&] {
    if (to_wake != nullptr) to_wake->wake();
    visit_case(all, static_cast<std::size_t>(taken), [&](auto& c) { c.complete(closed); }, indices);
    return taken;
  };
  // Pass 1a, over several channels: lock one channel at a time. A case found
  // ready completes at that moment, exactly as it would under all the locks,
  // and the others stay free for their senders and receivers meanwhile (Go
  // locks them all; holding one lock at a time is what makes a busy select
  // cheap: bench/RESULTS.md, select over 4). The first round only tries each
  // lock and passes over a channel whose lock is held (its sender or
  // receiver is mid-operation, and another case is likely ready): waiting
  // for that lock was 13% of a busy select's samples on 2 workers, and
  // skipping it took select over 4 from ~95 to ~70-83 ns per message. A
  // channel skipped that way is polled again under its lock (it alone: the
  // others were just polled) before we give up on it, so a ready case is
  // never missed, only chosen less often while its lock is busy. Only when
  // nothing is ready do we take every lock, poll
  // again and queue (pass 1b, pass 2), so no wake-up can fall between the
  // last poll and the queueing.
  std::size_t channel_cases = 0;
  for (auto* c : cores) channel_cases += c != nullptr ? 1 : 0;
  if (channel_cases > 1) {
    poll(poll_locking::each_if_free);
    if (taken < 0 && skipped.any()) poll(poll_locking::skipped_only);
    if (taken < 0 && default_index >= 0) taken = default_index;
    if (taken >= 0) return finish_ready();
  }
  select_locks<n> locks;
  for (auto* c : cores) locks.add(c);
  locks.sort();
  locks.lock_all();
  poll(poll_locking::held);
  if (taken < 0 && default_index >= 0) taken = default_index;
  if (taken >= 0) {
    locks.unlock_all();
    return finish_ready();
  }

  // Pass 2: queue a waiter on every channel case and park.
  select_state sel;
  std::array<waiter, n> waiters;
  fiber* self = current_fiber();
  bool any_channel = false;
  for_each_case(
      all,
      [&](auto& c, auto i) {
        using case_t = std::remove_reference_t<decltype(c)>;
        if constexpr (case_t::kind == case_kind::recv || case_t::kind == case_kind::send) {
          if (c.core() == nullptr) return;  // nil channel: never ready
          waiter& w = waiters[i];
          w.fib = self;
          w.sel = &sel;
          w.case_index = static_cast<int>(i);
          w.data = c.slot_address();
          c.queue().push_back(&w);
          any_channel = true;
        }
      },
      indices);
  wait_reason reason = (any_channel || timeout_index >= 0) ? wait_reason::select : wait_reason::select_no_cases;

  waiter timer_target;  // wakes the selecting fiber or thread on timeout
  timer_target.fib = self;
  timer_target.sel = &sel;
  select_timer timer{};
  const auto deadline = deadline_after(timeout);
  if (self != nullptr) {
    if (timeout_index >= 0) {
      timer.sel = &sel;
      timer.target = &timer_target;
      timer.index = timeout_index;
      timer.node.when = deadline;
      timer.node.context = &timer;
      timer.node.fire = &select_timer::fire;
      locks.timer = &timer.node;
    }
    timer_guard cancel_on_exit{timeout_index >= 0 ? &timer.node : nullptr};
    try {
      park(reason, &select_locks<n>::arm_and_unlock, &locks);
    } catch (...) {  // forced unwind at shutdown: park() throws nothing else
      for_each_case(
          all,
          [&](auto& c, auto i) {
            using case_t = std::remove_reference_t<decltype(c)>;
            if constexpr (case_t::kind == case_kind::recv || case_t::kind == case_kind::send) {
              if (c.core() != nullptr) unlink_on_unwind(c.core()->lock, waiters[i]);
            }
          },
          indices);
      throw;
    }
  } else {
    locks.unlock_all();
    if (timeout_index >= 0) {
      if (!sel.event.wait_until(deadline)) {
        int expected = -1;
        if (!sel.winner.compare_exchange_strong(expected, timeout_index, std::memory_order_acq_rel))
          sel.event.wait();  // a channel won meanwhile: its wake() is on the way
      }
    } else {
      sel.event.wait();
    }
  }

  // Pass 3: unlink the waiters the winner did not consume.
  taken = sel.winner.load(std::memory_order_acquire);  // acquire: pairs with the winner's CAS
  if (any_channel) {
    locks.lock_all();
    for_each_case(
        all,
        [&](auto& c, auto i) {
          using case_t = std::remove_reference_t<decltype(c)>;
          if constexpr (case_t::kind == case_kind::recv || case_t::kind == case_kind::send) {
            if (waiters[i].queued) c.queue().remove(&waiters[i]);
          }
        },
        indices);
    locks.unlock_all();
  }
  closed = taken >= 0 && waiters[static_cast<std::size_t>(taken)].outcome == outcome_closed;
  visit_case(all, static_cast<std::size_t>(taken), [&](auto& c) { c.complete(closed); }, indices);
  return taken;
}

}  // namespace detail

// on_recv(ch, fn): receive from ch; fn(std::optional<T>) gets the value, or
// std::nullopt when ch is closed. fn may also take no argument.
template <class T, class Fn = detail::no_action>
auto on_recv(const chan<T>& ch, Fn fn = {}) {
  return detail::recv_case<T, Fn>{detail::state_of(ch), std::move(fn), std::nullopt};
}

// on_send(ch, v, fn): send v on ch, then run fn(). Sending on a closed
// channel throws goro::channel_closed (as send() does).
template <class T, class V, class Fn = detail::no_action>
auto on_send(const chan<T>& ch, V&& value, Fn fn = {}) {
  return detail::send_case<T, Fn>{detail::state_of(ch), T(std::forward<V>(value)), std::move(fn)};
}

// on_timeout(d, fn): taken when no other case is ready within d. The timer
// exists only while the select is parked and is removed when it returns.
template <class Rep, class Period, class Fn = detail::no_action>
auto on_timeout(std::chrono::duration<Rep, Period> d, Fn fn = {}) {
  return detail::timeout_case<Fn>{detail::saturating_steady(d), std::move(fn)};
}

// on_default(fn): taken at once when no other case is ready: select never blocks.
template <class Fn = detail::no_action>
auto on_default(Fn fn = {}) {
  return detail::default_case<Fn>{std::move(fn)};
}

// select() waits until one of its cases can proceed, performs it, runs its
// function and returns its index (0-based, in argument order). Among ready
// cases the choice is uniformly random. Nil channels are never ready. With
// no channel case, no timeout and no default it blocks forever (wait reason
// "select (no cases)"), like Go's empty select.
//
// Blocks: a fiber parks, a plain thread blocks.
// Throws: goro::channel_closed when the chosen case sends on a closed channel;
//   whatever the chosen case's function throws.
template <class... Cases>
int select(Cases&&... cases) {
  if constexpr (sizeof...(Cases) == 0) {
    detail::block_forever(wait_reason::select_no_cases);
  } else {
    return detail::select_impl(cases...);
  }
}

// --- chan<T> context-aware operations (declared in chan.hpp) ---
// Each is a two-case select, so the channel and the context's done channel
// are locked in address order like any other select.

template <class T>
template <class Context>
chan_op chan<T>::send(const Context& ctx, T v) const {
  if (ctx.done().is_nil()) {
    send(std::move(v));
    return chan_op::ok;
  }
  chan_op result = chan_op::ok;
  goro::select(on_send(*this, std::move(v)),
               on_recv(ctx.done(), [&](std::optional<std::monostate>) { result = chan_op::canceled; }));
  return result;
}

template <class T>
template <class Context>
try_recv_result<T> chan<T>::recv(const Context& ctx) const {
  try_recv_result<T> result;
  if (ctx.done().is_nil()) {
    recv_into(result.value);  // not `= recv()`: that copy stalls (chan.hpp, recv())
    result.status = result.value ? chan_op::ok : chan_op::closed;
    return result;
  }
  goro::select(on_recv(*this,
                       [&](std::optional<T> v) {
                         result.status = v ? chan_op::ok : chan_op::closed;
                         result.value = std::move(v);
                       }),
               on_recv(ctx.done(), [&](std::optional<std::monostate>) { result.status = chan_op::canceled; }));
  return result;
}

}  // namespace goro
