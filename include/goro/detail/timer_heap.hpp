// SPDX-License-Identifier: MIT
// Per-worker timers: a 4-ary min-heap of intrusive timer nodes with index
// back-pointers, so cancel is O(log n) and a cancelled timer leaves nothing
// behind (Go's time.After-in-a-loop leak cannot happen).
//
// Invariants:
//   * heap_ and every queued timer's index are guarded by mu_.
//   * A timer is in at most one heap; timer::heap says which (guarded by that
//     heap's mu_). A timer node lives in its owner's memory (usually on the
//     waiting fiber's stack) and must stay alive until cancel() returned or it
//     fired: cancel() waits out a fire() that is already running elsewhere, so
//     after cancel() returns nothing touches the node.
//   * fire() runs on a worker in scheduler context (never in a fiber), outside
//     mu_, and must not block: it may only take spinlocks and ready fibers.
#pragma once

#include "goro/detail/spinlock.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

namespace goro::detail {

using steady_time = std::chrono::steady_clock::time_point;

inline std::int64_t to_ns(steady_time t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
inline constexpr std::int64_t no_deadline_ns = std::numeric_limits<std::int64_t>::max();

// Durations from users may not fit steady_clock (hours::max() overflows
// nanoseconds; now + nanoseconds::max() overflows the time_point). Like Go's
// runtime.when(), a timeout too long to represent means never: these
// saturate at steady_time::max() (which no timer ever reaches) instead of
// wrapping into the past. Negative durations count as zero.
template <class Rep, class Period>
std::chrono::steady_clock::duration saturating_steady(std::chrono::duration<Rep, Period> d) noexcept {
  using steady_duration = std::chrono::steady_clock::duration;
  if (!(d > d.zero())) return steady_duration::zero();
  // Compare in long double: converting d itself may overflow.
  if (std::chrono::duration<long double>(d) >= std::chrono::duration<long double>(steady_duration::max()))
    return steady_duration::max();
  return std::chrono::ceil<steady_duration>(d);
}
template <class Rep, class Period>
steady_time deadline_after(steady_time now, std::chrono::duration<Rep, Period> d) noexcept {
  const auto v = saturating_steady(d);
  return v >= steady_time::max() - now ? steady_time::max() : now + v;
}
template <class Rep, class Period>
steady_time deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  return deadline_after(std::chrono::steady_clock::now(), d);
}

class timer_heap;

struct timer_node {
  enum : std::uint32_t { idle = 0, queued = 1, firing = 2 };

  steady_time when{};
  std::chrono::nanoseconds period{0};            // > 0: re-armed after each fire (tickers)
  void (*fire)(timer_node*) noexcept = nullptr;  // runs outside the heap lock
  void* context = nullptr;                       // for fire()'s use
  std::atomic<std::uint32_t> state{idle};
  std::atomic<timer_heap*> heap{nullptr};  // written under the heap's mu_; read racily by cancel()
  std::size_t index = 0;       // guarded by heap->mu_
};

class timer_heap {
 public:
  timer_heap() { heap_.reserve(64); }

  // Any thread. Returns true when t became the earliest timer of this heap
  // (the caller may need to wake a worker sleeping past t->when).
  bool add(timer_node* t) {
    spin_guard lock(mu_);
    t->heap.store(this, std::memory_order_relaxed);  // relaxed: re-checked under mu_ by cancel()
    t->state.store(timer_node::queued, std::memory_order_relaxed);  // relaxed: read under mu_ or after fire's release
    t->index = heap_.size();
    heap_.push_back(t);
    sift_up(t->index);
    publish_next();
    return heap_.front() == t;
  }

  // Any thread. Removes t if it is still queued here (true). If fire() is
  // running elsewhere, waits until it has returned (false): afterwards no one
  // touches t.
  static bool cancel(timer_node* t) noexcept {
    for (;;) {
      std::uint32_t s = t->state.load(std::memory_order_acquire);  // acquire: pairs with release after fire()
      if (s == timer_node::idle) return false;
      if (s == timer_node::firing) {
        cpu_relax();
        continue;
      }
      timer_heap* h = t->heap.load(std::memory_order_relaxed);  // relaxed: re-checked under h->mu_
      if (h == nullptr) continue;
      spin_guard lock(h->mu_);
      if (t->state.load(std::memory_order_relaxed) != timer_node::queued ||
          t->heap.load(std::memory_order_relaxed) != h)
        continue;
      h->remove_at(t->index);
      h->publish_next();
      t->heap.store(nullptr, std::memory_order_relaxed);
      t->state.store(timer_node::idle, std::memory_order_release);
      return true;
    }
  }

  // Forgets every queued timer (marking it idle), for a heap about to be
  // destroyed with timers still armed by objects that outlive it.
  void clear_all() noexcept {
    spin_guard lock(mu_);
    for (timer_node* t : heap_) {
      t->heap.store(nullptr, std::memory_order_relaxed);
      t->state.store(timer_node::idle, std::memory_order_release);
    }
    heap_.clear();
    publish_next();
  }

  // Fires every timer due at `now`. Returns how many fired. Worker threads.
  std::size_t run_expired(steady_time now) {
    if (next_ns_.load(std::memory_order_acquire) > to_ns(now)) return 0;  // acquire: pairs with publish_next
    std::size_t fired = 0;
    for (;;) {
      timer_node* t = nullptr;
      {
        spin_guard lock(mu_);
        if (heap_.empty() || heap_.front()->when > now) break;
        t = heap_.front();
        remove_at(0);
        publish_next();
        t->heap.store(nullptr, std::memory_order_relaxed);
        t->state.store(timer_node::firing, std::memory_order_relaxed);  // relaxed: cancel() re-reads under mu_
      }
      t->fire(t);
      if (t->period.count() > 0) {
        // A periodic timer (ticker) is re-armed here, while cancel() still
        // waits on `firing`, never by fire() itself. Missed periods are
        // skipped, like Go's ticker.
        spin_guard lock(mu_);
        t->when += t->period;
        if (t->when <= now) t->when = now + t->period;
        try {
          heap_.push_back(t);
        } catch (...) {  // out of memory: the ticker stops rather than the worker
          t->state.store(timer_node::idle, std::memory_order_release);
          continue;
        }
        t->heap.store(this, std::memory_order_relaxed);
        t->index = heap_.size() - 1;
        sift_up(t->index);
        publish_next();
        t->state.store(timer_node::queued, std::memory_order_release);
      } else {
        t->state.store(timer_node::idle, std::memory_order_release);  // release: fire() is done with t (pairs with cancel)
      }
      ++fired;
    }
    return fired;
  }

  // Earliest deadline in ns (no_deadline_ns when empty). Any thread; racy read.
  std::int64_t next_deadline_ns() const noexcept { return next_ns_.load(std::memory_order_acquire); }
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::size_t arity = 4;

  void publish_next() noexcept GORO_NO_TSA {
    next_ns_.store(heap_.empty() ? no_deadline_ns : to_ns(heap_.front()->when),
                   std::memory_order_release);  // release: pairs with run_expired/next_deadline_ns readers
    size_.store(heap_.size(), std::memory_order_relaxed);  // relaxed: a statistic
  }
  void place(std::size_t i, timer_node* t) noexcept GORO_NO_TSA {
    heap_[i] = t;
    t->index = i;
  }
  void sift_up(std::size_t i) noexcept GORO_NO_TSA {
    timer_node* t = heap_[i];
    while (i > 0) {
      std::size_t parent = (i - 1) / arity;
      if (heap_[parent]->when <= t->when) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, t);
  }
  void sift_down(std::size_t i) noexcept GORO_NO_TSA {
    timer_node* t = heap_[i];
    std::size_t n = heap_.size();
    for (;;) {
      std::size_t first = i * arity + 1;
      if (first >= n) break;
      std::size_t best = first;
      for (std::size_t c = first + 1; c < first + arity && c < n; ++c)
        if (heap_[c]->when < heap_[best]->when) best = c;
      if (heap_[best]->when >= t->when) break;
      place(i, heap_[best]);
      i = best;
    }
    place(i, t);
  }
  void remove_at(std::size_t i) noexcept GORO_NO_TSA {
    timer_node* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    place(i, last);
    if (i > 0 && heap_[(i - 1) / arity]->when > last->when)
      sift_up(i);
    else
      sift_down(i);
  }

  spinlock mu_;
  std::vector<timer_node*> heap_;  // guarded by mu_
  std::atomic<std::int64_t> next_ns_{no_deadline_ns};
  std::atomic<std::size_t> size_{0};
};

// Cancels a timer when the scope ends, also when a parked fiber is unwound
// at shutdown: a node on a fiber's stack never outlives it in a heap.
struct timer_guard {
  timer_node* node;
  ~timer_guard() {
    if (node != nullptr) timer_heap::cancel(node);
  }
};

}  // namespace goro::detail
