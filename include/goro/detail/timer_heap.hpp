// SPDX-License-Identifier: MIT
// Per-worker timers: a 4-ary min-heap of intrusive timer nodes, so cancel is
// O(log n) and a cancelled timer leaves nothing behind (Go's
// time.After-in-a-loop leak cannot happen).
//
// Layout: the heap array holds (deadline, slot) pairs; a slot table owned by
// the heap maps each slot to its node and the node's heap position, and a
// node only records its slot (written once, by add()). A sift therefore
// reads and writes the heap's own arrays and never touches a node: nodes
// live on the waiting fibers' stacks, a page apart each, and with 100k
// sleepers every node touched was a cache and TLB miss (one per heap level
// per pop, most of the timer cost; Go 1.23 keeps deadlines inline too).
//
// Invariants:
//   * heap_, slots_, free_slots_ and every queued timer's slot are guarded by
//     mu_. For a queued timer t: slots_[t->slot] == {t, p} and
//     heap_[p].slot == t->slot. free_slots_ has capacity for every slot, so
//     freeing one never allocates.
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
#include <new>
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
  // Runs outside the heap lock, with context (the heap passes its own copy
  // of it: reading it from the node would wait for the node's cold line).
  void (*fire)(timer_node*, void* context) noexcept = nullptr;
  void* context = nullptr;  // for fire()'s use; fixed while the timer is queued
  std::atomic<std::uint32_t> state{idle};
  std::atomic<timer_heap*> heap{nullptr};  // written under the heap's mu_; read racily by cancel()
  std::uint32_t slot = 0;      // in heap's slot table; guarded by heap->mu_
};

class timer_heap {
 public:
  timer_heap() {
    heap_.reserve(64);
    slots_.reserve(64);
    free_slots_.reserve(64);
  }

  // Any thread. Returns true when t became the earliest timer of this heap
  // (the caller may need to wake a worker sleeping past t->when).
  bool add(timer_node* t) {
    spin_guard lock(mu_);
    t->heap.store(this, std::memory_order_relaxed);  // relaxed: re-checked under mu_ by cancel()
    t->state.store(timer_node::queued, std::memory_order_relaxed);  // relaxed: read under mu_ or after fire's release
    insert(t);  // may throw bad_alloc: nothing changed then but the two stores above
    publish_next();
    return node_at(0) == t;
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
      h->remove_at(h->slots_[t->slot].pos);
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
    for (const entry& e : heap_) {
      timer_node* t = slots_[e.slot].node;
      t->heap.store(nullptr, std::memory_order_relaxed);
      t->state.store(timer_node::idle, std::memory_order_release);
    }
    heap_.clear();
    slots_.clear();
    free_slots_.clear();
    publish_next();
  }

  // Fires every timer due at `now`. Returns how many fired. Worker threads.
  // One at a time: a fire() may cancel another due timer (a context's
  // deadline ends its children's), and cancel() waits out a timer in
  // `firing`, so only the timer being fired may be in that state.
  std::size_t run_expired(steady_time now) {
    const std::int64_t now_ns = to_ns(now);
    if (next_ns_.load(std::memory_order_acquire) > now_ns) return 0;  // acquire: pairs with publish_next
    std::size_t fired = 0;
    for (;;) {
      slot_info due;
      // The contexts (usually fiber objects) and nodes (in their fibers'
      // stack frames) of the timers due after this one, to start fetching
      // while it fires: when many are due at once all of them are cold, and
      // fetched one after the other they were most of a fire's cost. The
      // next one is at the root, the one after it among the root's children
      // (one line of heap_). Noted under mu_, prefetched after it: a
      // prefetch of a cold page waits for its page walk. Written out here,
      // not as a helper: GCC 12 deems a function whose only effect is a
      // prefetch pure and drops the call.
      const void* ahead[2 * (arity + 1)];
      std::size_t n_ahead = 0;
      {
        spin_guard lock(mu_);
        if (heap_.empty() || heap_.front().when_ns > now_ns) break;
        due = slots_[heap_.front().slot];
        remove_at(0);
        publish_next();
        for (std::size_t i = 0; i <= arity && i < heap_.size(); ++i) {
          if (heap_[i].when_ns > now_ns) continue;
          const slot_info& next = slots_[heap_[i].slot];
          ahead[n_ahead++] = next.context;
          ahead[n_ahead++] = next.node;
        }
        due.node->heap.store(nullptr, std::memory_order_relaxed);
        due.node->state.store(timer_node::firing, std::memory_order_relaxed);  // relaxed: cancel() re-reads under mu_
      }
      for (std::size_t k = 0; k < n_ahead; ++k) __builtin_prefetch(ahead[k], 1);  // 1: fire() writes them (state)
      due.fire(due.node, due.context);
      if (due.periodic) {
        rearm(due.node, now);
      } else {
        due.node->state.store(timer_node::idle, std::memory_order_release);  // release: fire() is done with the node (pairs with cancel)
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

  // A heap position: the deadline (the sift key) and the timer's slot.
  struct entry {
    std::int64_t when_ns;
    std::uint32_t slot;
  };
  // A queued timer, with copies of what firing it reads: run_expired only
  // writes to the node (its state), so a node on a cold stack page costs no
  // wait, and the context (usually a fiber) can be prefetched ahead.
  struct slot_info {
    timer_node* node;
    void (*fire)(timer_node*, void*) noexcept;
    void* context;
    std::uint32_t pos;  // in heap_
    bool periodic;
  };

  timer_node* node_at(std::size_t pos) const noexcept GORO_NO_TSA { return slots_[heap_[pos].slot].node; }

  // Queues t (state and heap already set). Strong guarantee on bad_alloc.
  void insert(timer_node* t) GORO_NO_TSA {
    std::uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      heap_.push_back({to_ns(t->when), slot});  // may throw: nothing taken yet
      free_slots_.pop_back();
      slots_[slot] = {t, t->fire, t->context, 0, t->period.count() > 0};
    } else {
      if (slots_.size() >= std::numeric_limits<std::uint32_t>::max()) throw std::bad_alloc();
      slot = static_cast<std::uint32_t>(slots_.size());
      if (free_slots_.capacity() < slots_.size() + 1) free_slots_.reserve(2 * slots_.size() + 64);
      if (heap_.size() == heap_.capacity()) heap_.reserve(2 * heap_.size() + 64);
      slots_.push_back({t, t->fire, t->context, 0, t->period.count() > 0});  // may throw: the reservations above change nothing visible
      heap_.push_back({to_ns(t->when), slot});  // reserved: never throws
    }
    t->slot = slot;
    sift_up(heap_.size() - 1);
  }

  // A periodic timer (ticker) is re-armed here, after its fire(), while
  // cancel() still waits on `firing`, never by fire() itself. Missed
  // periods are skipped, like Go's ticker.
  void rearm(timer_node* t, steady_time now) noexcept {
    spin_guard lock(mu_);
    t->when += t->period;
    if (t->when <= now) t->when = now + t->period;
    try {
      insert(t);
    } catch (...) {  // out of memory: the ticker stops rather than the worker
      t->state.store(timer_node::idle, std::memory_order_release);
      return;
    }
    t->heap.store(this, std::memory_order_relaxed);
    publish_next();
    t->state.store(timer_node::queued, std::memory_order_release);
  }

  void publish_next() noexcept GORO_NO_TSA {
    next_ns_.store(heap_.empty() ? no_deadline_ns : heap_.front().when_ns,
                   std::memory_order_release);  // release: pairs with run_expired/next_deadline_ns readers
    size_.store(heap_.size(), std::memory_order_relaxed);  // relaxed: a statistic
  }
  void place(std::size_t i, entry e) noexcept GORO_NO_TSA {
    heap_[i] = e;
    slots_[e.slot].pos = static_cast<std::uint32_t>(i);
  }
  void sift_up(std::size_t i) noexcept GORO_NO_TSA {
    entry e = heap_[i];
    while (i > 0) {
      std::size_t parent = (i - 1) / arity;
      if (heap_[parent].when_ns <= e.when_ns) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }
  void sift_down(std::size_t i) noexcept GORO_NO_TSA {
    entry e = heap_[i];
    std::size_t n = heap_.size();
    for (;;) {
      std::size_t first = i * arity + 1;
      if (first >= n) break;
      std::size_t best = first;
      for (std::size_t c = first + 1; c < first + arity && c < n; ++c)
        if (heap_[c].when_ns < heap_[best].when_ns) best = c;
      if (heap_[best].when_ns >= e.when_ns) break;
      place(i, heap_[best]);
      i = best;
    }
    place(i, e);
  }
  void remove_at(std::size_t i) noexcept GORO_NO_TSA {
    free_slots_.push_back(heap_[i].slot);  // capacity reserved in insert(): never throws
    entry last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    place(i, last);
    if (i > 0 && heap_[(i - 1) / arity].when_ns > last.when_ns)
      sift_up(i);
    else
      sift_down(i);
  }

  spinlock mu_;
  std::vector<entry> heap_;                // guarded by mu_
  std::vector<slot_info> slots_;           // guarded by mu_
  std::vector<std::uint32_t> free_slots_;  // guarded by mu_
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
