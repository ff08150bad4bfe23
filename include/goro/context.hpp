// SPDX-License-Identifier: MIT
// goro::context: Go's package context. Cancellation that reaches every
// blocking point, deadlines, request-scoped values.
//
//   goro::background()                       never cancelled (also: context{})
//   auto [ctx, cancel] = goro::with_cancel(parent);
//   auto [ctx, cancel] = goro::with_timeout(parent, 2s);
//   auto [ctx, cancel] = goro::with_deadline(parent, t);
//   auto ctx = goro::with_value(parent, key, value);       key: a goro::context_key<T>
//   auto [ctx, cancel] = goro::with_stop_token(parent, token);   C++20 interop
//   ctx.done()  ctx.err()  ctx.deadline()  ctx.value(key)  ctx.stop_token()
//   goro::context_errc::canceled / deadline_exceeded   (std::error_code)
#pragma once

#include "goro/chan.hpp"
#include "goro/select.hpp"
#include "goro/this_fiber.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/timer_heap.hpp"

#include <any>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace goro {

enum class context_errc { canceled = 1, deadline_exceeded = 2 };

inline const std::error_category& context_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "goro.context"; }
    std::string message(int value) const override {
      switch (static_cast<context_errc>(value)) {
        case context_errc::canceled: return "context canceled";
        case context_errc::deadline_exceeded: return "context deadline exceeded";
      }
      return "unknown context error";
    }
  };
  static const category instance;
  return instance;
}
inline std::error_code make_error_code(context_errc e) noexcept {
  return {static_cast<int>(e), context_category()};
}

}  // namespace goro

template <>
struct std::is_error_code_enum<goro::context_errc> : std::true_type {};

namespace goro {

// A key for with_value()/value(). Declare one object per key (its address is
// the identity, as Go recommends unexported key types):
//   inline const goro::context_key<std::string> request_id_key;
template <class T>
struct context_key {
  using value_type = T;
};

using time_point = std::chrono::steady_clock::time_point;

namespace detail {

// One node of the context tree.
//
// Invariants:
//   * A cancellable node (with_cancel/deadline/stop_token) owns `done`, a
//     channel closed exactly once, on cancellation; err is written before
//     that, under mu, and is_done published with release.
//   * A value node is not cancellable: canceller points to the nearest
//     cancellable ancestor (or is null under background), whose done/err it
//     reports.
//   * children lists cancellable descendants attached to this node (raw
//     pointers, guarded by mu). A child detaches itself when cancelled or
//     destroyed, so short-lived children leave the parent as it was.
//     Cancelling promotes each child to a shared_ptr under mu first: a child
//     in destruction is skipped (its destructor then waits for mu).
struct context_state : std::enable_shared_from_this<context_state> {
  std::shared_ptr<context_state> parent;
  context_state* canceller = nullptr;  // this node if cancellable, else the nearest cancellable ancestor

  // --- cancellation (cancellable nodes) ---
  spinlock mu;
  std::atomic<bool> is_done{false};
  std::error_code err;  // written once under mu, before is_done
  chan<std::monostate> done;
  context_state* child_head GORO_GUARDED_BY(mu) = nullptr;
  context_state* sibling_prev = nullptr;  // guarded by the parent canceller's mu
  context_state* sibling_next = nullptr;
  bool attached = false;                  // guarded by the parent canceller's mu
  std::optional<std::stop_source> stop;   // created on first stop_token(); guarded by mu

  // --- deadline ---
  std::optional<time_point> deadline;  // this node's own, if any (effective: min up the chain)
  timer_node timer;
  bool timer_armed = false;

  // --- with_stop_token ---
  std::optional<std::stop_callback<std::function<void()>>> stop_link;

  // --- value ---
  const void* key = nullptr;
  std::any value;

  bool cancellable() const noexcept { return canceller == this; }

  // Runs on whichever thread drops the last handle. Releasing `parent` here
  // would destroy a chain of otherwise unowned ancestors recursively, one
  // frame per level (a fiber's 64 KiB stack overflows after ~1,300): each
  // ancestor this node solely owns is unlinked and destroyed in a loop.
  ~context_state() {
    unlink();
    std::shared_ptr<context_state> p = std::move(parent);
    while (p != nullptr && p.use_count() == 1) {
      // No handle owns p any more. Only two paths can still reach it, each
      // through a transient strong reference: a cancel of p's parent (which
      // promotes its children under the parent's mu) and p's stop_token
      // callback. Close both, then look again:
      //   * unlink() takes p off its parent's list under that mu, so a
      //     promotion done before is visible to us afterwards (mutex
      //     happens-before), and none can happen after; it also waits out a
      //     deadline timer firing on p;
      //   * resetting stop_link waits for a running callback to return.
      // If nobody else holds p now, nobody ever will: its parent link is
      // ours to take. Otherwise the transient holder destroys p when it is
      // done, which then runs this loop itself (one level deeper, not N).
      p->unlink();
      p->stop_link.reset();
      if (p.use_count() != 1) break;
      std::shared_ptr<context_state> next = std::move(p->parent);
      p.reset();  // its destructor finds no parent left to release
      p = std::move(next);
    }
  }

  // Removes this node's timer and takes it off its parent's children list.
  void unlink() noexcept {
    if (timer_armed) timer_heap::cancel(&timer);  // no concurrent writer: see with_deadline
    detach();
  }

  // Removes this node from its cancellable parent's children list.
  void detach() noexcept GORO_NO_TSA {
    context_state* p = parent != nullptr ? parent->canceller : nullptr;
    if (p == nullptr) return;
    spin_guard lock(p->mu);
    if (!attached) return;
    if (sibling_prev != nullptr)
      sibling_prev->sibling_next = sibling_next;
    else
      p->child_head = sibling_next;
    if (sibling_next != nullptr) sibling_next->sibling_prev = sibling_prev;
    sibling_prev = sibling_next = nullptr;
    attached = false;
  }

  // Attaches a new cancellable child, or cancels it at once when this node
  // is already done. Called on this node's canceller.
  void attach(context_state* child) GORO_NO_TSA {
    std::error_code already;
    {
      spin_guard lock(mu);
      if (is_done.load(std::memory_order_relaxed)) {
        already = err;
      } else {
        child->sibling_prev = nullptr;
        child->sibling_next = child_head;
        if (child_head != nullptr) child_head->sibling_prev = child;
        child_head = child;
        child->attached = true;
      }
    }
    if (already) child->cancel(already, true);
  }

  // Cancels this node and every cancellable descendant with e. Idempotent
  // and thread-safe; never blocks (may run on a worker in scheduler context,
  // from the deadline timer). from_timer: do not cancel our own firing timer.
  // Iterative, with an explicit work list: a chain thousands of levels deep
  // must not take one stack frame per level (Go's context has no depth limit).
  void cancel(std::error_code e, bool from_timer = false) {
    std::vector<std::shared_ptr<context_state>> pending;
    cancel_one(e, from_timer, pending);
    while (!pending.empty()) {
      std::shared_ptr<context_state> child = std::move(pending.back());
      pending.pop_back();
      child->cancel_one(e, false, pending);
    }
  }

  // Cancels this node alone and appends its cancellable children (promoted
  // to shared_ptr under mu: a child in destruction is skipped) to `pending`.
  void cancel_one(std::error_code e, bool from_timer, std::vector<std::shared_ptr<context_state>>& pending)
      GORO_NO_TSA {
    std::optional<std::stop_source> stop_copy;
    bool remove_timer = false;
    {
      spin_guard lock(mu);
      if (is_done.load(std::memory_order_relaxed)) return;
      err = e;
      is_done.store(true, std::memory_order_release);  // release: publishes err (pairs with acquire in error())
      for (context_state* c = child_head; c != nullptr;) {
        context_state* next = c->sibling_next;
        c->attached = false;
        c->sibling_prev = c->sibling_next = nullptr;
        if (auto alive = c->weak_from_this().lock()) pending.push_back(std::move(alive));
        c = next;
      }
      child_head = nullptr;
      stop_copy = stop;
      remove_timer = timer_armed && !from_timer;  // timer_armed is written under mu (with_deadline)
    }
    done.close();  // wakes every select and wait on done
    if (stop_copy) stop_copy->request_stop();
    if (remove_timer) timer_heap::cancel(&timer);
    detach();
  }

  std::error_code error() const noexcept {
    const context_state* c = canceller;
    if (c == nullptr || !c->is_done.load(std::memory_order_acquire)) return {};  // acquire: pairs with cancel()
    return c->err;
  }

  static void fire_deadline(timer_node*, void* context) noexcept {
    auto* self = static_cast<context_state*>(context);
    self->cancel(context_errc::deadline_exceeded, true);
  }
};

}  // namespace detail

class context;
std::stop_token context_stop_token(const context& ctx);

// context carries a cancellation signal, a deadline and values across API
// boundaries and between fibers. A cheap shared handle; thread-safe.
//
// Blocking operations that take a context return (or report) ctx.err() as
// soon as it is cancelled, however they were blocked: channel send/recv,
// select's on_done, sleep, wait_group::wait, mutex::lock, semaphore,
// future::get.
// Memory ordering: a cancel() happens-before every wait it ends, and before
// err() returns the error.
class context {
 public:
  context() = default;  // background: never cancelled, no deadline, no values

  // done() is a channel closed when the context is cancelled (nil, so never
  // ready, for a context that cannot be cancelled). Use it in select.
  const chan<std::monostate>& done() const noexcept {
    static const chan<std::monostate> never;
    return cancel_node() != nullptr ? cancel_node()->done : never;
  }
  // err() is empty until the context is cancelled, then canceled or
  // deadline_exceeded (compare with goro::context_errc).
  std::error_code err() const noexcept { return state_ ? state_->error() : std::error_code{}; }
  bool is_cancelled() const noexcept { return static_cast<bool>(err()); }

  // deadline() is the earliest deadline of this context and its ancestors.
  std::optional<time_point> deadline() const noexcept {
    std::optional<time_point> earliest;
    for (auto* s = state_.get(); s != nullptr; s = s->parent.get())
      if (s->deadline && (!earliest || *s->deadline < *earliest)) earliest = s->deadline;
    return earliest;
  }

  // value() finds the nearest value stored under key, or nullptr.
  template <class T>
  const T* value(const context_key<T>& key) const noexcept {
    for (auto* s = state_.get(); s != nullptr; s = s->parent.get())
      if (s->key == &key) return std::any_cast<T>(&s->value);
    return nullptr;
  }

  // stop_token() is requested when this context is cancelled (C++20 interop).
  std::stop_token stop_token() const { return context_stop_token(*this); }

  // For blocking primitives: the channel core that closes on cancellation.
  detail::chan_core* done_core() const noexcept { return detail::state_of(done()); }

 private:
  friend struct context_access;
  detail::context_state* cancel_node() const noexcept { return state_ ? state_->canceller : nullptr; }
  std::shared_ptr<detail::context_state> state_;
};

// background() is the root context: never cancelled.
inline context background() { return context{}; }

// cancel_func cancels its context (with context_errc::canceled) and every
// context derived from it. Idempotent, thread-safe, callable from any thread
// or fiber. Destroying it does not cancel: call it when the work is done (as
// Go's vet insists) so the context detaches from its parent.
class cancel_func {
 public:
  cancel_func() = default;
  void operator()() const {
    if (state_) state_->cancel(context_errc::canceled);
  }

 private:
  friend struct context_access;
  explicit cancel_func(std::shared_ptr<detail::context_state> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::context_state> state_;
};

struct context_access {
  static context make(std::shared_ptr<detail::context_state> s) {
    context c;
    c.state_ = std::move(s);
    return c;
  }
  static const std::shared_ptr<detail::context_state>& state(const context& c) { return c.state_; }
  static cancel_func canceller(std::shared_ptr<detail::context_state> s) { return cancel_func(std::move(s)); }

  static std::shared_ptr<detail::context_state> new_cancellable(const context& parent) {
    auto s = std::make_shared<detail::context_state>();
    s->parent = parent.state_;
    s->canceller = s.get();
    s->done = chan<std::monostate>(0);
    if (detail::context_state* p = parent.cancel_node()) p->attach(s.get());
    return s;
  }
};

inline std::stop_token context_stop_token(const context& ctx) {
  auto& s = context_access::state(ctx);
  detail::context_state* c = s ? s->canceller : nullptr;
  if (c == nullptr) return {};  // never requested
  bool done_now;
  std::stop_token token;
  {
    detail::spin_guard lock(c->mu);
    if (!c->stop) c->stop.emplace();
    token = c->stop->get_token();
    done_now = c->is_done.load(std::memory_order_relaxed);
  }
  if (done_now) {
    std::stop_source copy;
    {
      detail::spin_guard lock(c->mu);
      copy = *c->stop;
    }
    copy.request_stop();
  }
  return token;
}

// with_cancel() derives a context that is cancelled when cancel is called or
// when parent is.
inline std::pair<context, cancel_func> with_cancel(const context& parent) {
  auto s = context_access::new_cancellable(parent);
  return {context_access::make(s), context_access::canceller(s)};
}

// with_deadline() derives a context that is also cancelled, with
// deadline_exceeded, at t. The timer lives on the runtime's timer heaps
// (a runtime must be running) and is removed when the context is cancelled
// or released.
inline std::pair<context, cancel_func> with_deadline(const context& parent, time_point t) {
  auto parent_deadline = parent.deadline();
  auto s = context_access::new_cancellable(parent);
  if (!parent_deadline || t < *parent_deadline) {
    s->deadline = t;
    if (t <= std::chrono::steady_clock::now()) {
      s->cancel(context_errc::deadline_exceeded);
    } else {
      // s is already attached: a parent cancel on another thread may race
      // this. timer_armed is set under mu, so a cancel either sees it (and
      // removes the timer) or ran before it (and we see is_done); after
      // arming, a re-check under mu catches a cancel that ran in between
      // and may have tried to remove the timer before it was queued.
      {
        detail::spin_guard lock(s->mu);
        if (s->is_done.load(std::memory_order_relaxed)) return {context_access::make(s), context_access::canceller(s)};
        s->timer.when = t;
        s->timer.context = s.get();
        s->timer.fire = &detail::context_state::fire_deadline;
        s->timer_armed = true;
      }
      detail::arm_timer(&s->timer);
      bool cancelled_meanwhile;
      {
        detail::spin_guard lock(s->mu);
        cancelled_meanwhile = s->is_done.load(std::memory_order_relaxed);
      }
      if (cancelled_meanwhile) detail::timer_heap::cancel(&s->timer);
    }
  }
  return {context_access::make(s), context_access::canceller(s)};
}

template <class Rep, class Period>
std::pair<context, cancel_func> with_timeout(const context& parent, std::chrono::duration<Rep, Period> d) {
  return with_deadline(parent, detail::deadline_after(d));
}

// with_value() derives a context that carries value under key.
template <class T, class V>
context with_value(const context& parent, const context_key<T>& key, V&& value) {
  auto s = std::make_shared<detail::context_state>();
  s->parent = context_access::state(parent);
  s->canceller = s->parent ? s->parent->canceller : nullptr;
  s->key = &key;
  s->value = T(std::forward<V>(value));
  return context_access::make(std::move(s));
}

// with_stop_token() derives a context that is also cancelled when token is
// requested (C++20 interop: code holding a std::stop_source can cancel goro
// work).
inline std::pair<context, cancel_func> with_stop_token(const context& parent, std::stop_token token) {
  auto s = context_access::new_cancellable(parent);
  std::weak_ptr<detail::context_state> weak = s;
  s->stop_link.emplace(std::move(token), std::function<void()>([weak] {
                         if (auto alive = weak.lock()) alive->cancel(context_errc::canceled);
                       }));
  return {context_access::make(s), context_access::canceller(s)};
}

// on_done(ctx, fn): a select case taken when ctx is cancelled (never, for
// a context that cannot be cancelled).
template <class Fn = detail::no_action>
auto on_done(const context& ctx, Fn fn = {}) {
  return on_recv(ctx.done(), [fn = std::move(fn)](std::optional<std::monostate>) mutable { fn(); });
}

namespace this_fiber {
// sleep_for(ctx, d) sleeps like sleep_for(d) but returns ctx.err() as soon as
// ctx is cancelled; an empty error_code when it slept the whole duration.
template <class Rep, class Period>
std::error_code sleep_for(const context& ctx, std::chrono::duration<Rep, Period> d) {
  if (auto e = ctx.err()) return e;
  if (ctx.done().is_nil()) {
    goro::this_fiber::sleep_for(d);
    return {};
  }
  std::error_code result;
  goro::select(on_done(ctx, [&] { result = ctx.err(); }), on_timeout(d));
  return result;
}
template <class Duration>
std::error_code sleep_until(const context& ctx, std::chrono::time_point<std::chrono::steady_clock, Duration> t) {
  return sleep_for(ctx, t - std::chrono::steady_clock::now());
}
}  // namespace this_fiber


}  // namespace goro
