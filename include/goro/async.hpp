// SPDX-License-Identifier: MIT
// Futures on fibers: the async/await vocabulary.
//
//   goro::future<T> f = goro::async([] { return compute(); });
//   T v = f.get();                     // parks until ready; rethrows fn's exception
//   goro::result<T> r = f.get(ctx);    // or ends with ctx.err()
//   auto all = goro::await_all(futures);     // a result<T> per future
//   auto r = goro::timeout(2s, [](goro::context ctx) { ... });   // result, or deadline_exceeded
//   auto fs = goro::spawn_many(n, [](std::size_t i) { ... });    // n futures
#pragma once

#include "goro/context.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"
#include "goro/result.hpp"
#include "goro/spawn.hpp"

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace goro {

namespace detail {

// Shared state of a future: set once by the async fiber.
// Invariants: outcome and ready are guarded by lock; waiters queue only
// while !ready; set() wakes every waiter once.
template <class T>
struct future_state {
  spinlock lock;
  bool ready GORO_GUARDED_BY(lock) = false;
  result<T> outcome GORO_GUARDED_BY(lock);
  wait_queue waiters GORO_GUARDED_BY(lock);

  void set(result<T> r) {
    wait_queue woken;
    {
      spin_guard guard(lock);
      outcome = std::move(r);
      ready = true;
      while (waiter* w = waiters.pop_claimed()) woken.push_back(w);
    }
    while (waiter* w = woken.pop_front()) w->wake();
  }

  // Waits until ready or done (a context's done channel) closes. Returns
  // false on cancellation.
  bool wait(chan_core* done) GORO_NO_TSA {
    lock.lock();
    if (ready) {
      lock.unlock();
      return true;
    }
    waiter w;
    w.fib = current_fiber();
    waiters.push_back(&w);
    return block_on_until(lock, waiters, w, wait_reason::future_get, steady_time::max(), done) !=
           wait_result::canceled;
  }
};

}  // namespace detail

// future<T> is the eventual result of an async() call. A cheap shared handle:
// copies see the same result; get() may be called any number of times.
//
// Blocks: get()/wait() park a fiber (or block a plain thread) until ready.
// Cancellation: get(ctx) returns a result holding ctx.err() (as a
//   std::system_error) when ctx ends first; the async fiber keeps running.
// Memory ordering: everything the async function did happens-before get()
//   returns its result.
template <class T>
class future {
 public:
  future() = default;
  bool valid() const noexcept { return static_cast<bool>(state_); }

  // ready() is true once the result is available.
  bool ready() const {
    detail::spin_guard lock(state_->lock);
    return state_->ready;
  }
  void wait() const { state_->wait(nullptr); }

  // get() returns the value (a copy: futures are shared) or rethrows the
  // function's exception.
  T get() const {
    wait();
    detail::spin_guard lock(state_->lock);
    if constexpr (std::is_void_v<T>) {
      state_->outcome.value();
    } else {
      return state_->outcome.value();
    }
  }

  // get(ctx) returns the outcome, or ctx.err() if ctx ends first.
  result<T> get(const context& ctx) const {
    if (!state_->wait(ctx.done_core())) return result<T>::failure(make_error(ctx.err()));
    detail::spin_guard lock(state_->lock);
    return state_->outcome;
  }

 private:
  template <class U, class Fn>
  friend future<U> detail_make_async(spawn_options options, Fn&& fn, source_location site);
  std::shared_ptr<detail::future_state<T>> state_;
};

template <class T, class Fn>
future<T> detail_make_async(spawn_options options, Fn&& fn, source_location site) {
  future<T> f;
  f.state_ = std::make_shared<detail::future_state<T>>();
  spawn(
      std::move(options),
      [state = f.state_, fn = std::forward<Fn>(fn)]() mutable { state->set(capture(fn)); }, site);
  return f;
}

// async() runs fn() in a new fiber and returns a future of its result. An
// exception from fn is captured in the future (not a panic).
template <class Fn>
auto async(Fn&& fn, source_location site = source_location::current()) -> future<std::invoke_result_t<std::decay_t<Fn>&>> {
  using value_t = std::invoke_result_t<std::decay_t<Fn>&>;
  return detail_make_async<value_t>(spawn_options{}, std::forward<Fn>(fn), site);
}
template <class Fn>
auto async(spawn_options options, Fn&& fn, source_location site = source_location::current())
    -> future<std::invoke_result_t<std::decay_t<Fn>&>> {
  using value_t = std::invoke_result_t<std::decay_t<Fn>&>;
  return detail_make_async<value_t>(std::move(options), std::forward<Fn>(fn), site);
}

// await_all() waits for every future and returns their outcomes in order.
template <class T>
std::vector<result<T>> await_all(const std::vector<future<T>>& futures) {
  std::vector<result<T>> out;
  out.reserve(futures.size());
  for (auto& f : futures) out.push_back(f.get(background()));
  return out;
}
// await_all(ctx, futures): as above, but futures not ready when ctx ends get
// ctx.err().
template <class T>
std::vector<result<T>> await_all(const context& ctx, const std::vector<future<T>>& futures) {
  std::vector<result<T>> out;
  out.reserve(futures.size());
  for (auto& f : futures) out.push_back(f.get(ctx));
  return out;
}

// timeout() runs fn(ctx) in a new fiber with a context that expires after d
// and waits for it. Returns its outcome, or deadline_exceeded once d passed:
// the fiber is then cancelled through ctx (it must watch ctx to stop early:
// a fiber cannot be killed).
template <class Rep, class Period, class Fn>
auto timeout(std::chrono::duration<Rep, Period> d, Fn&& fn, source_location site = source_location::current())
    -> result<std::invoke_result_t<std::decay_t<Fn>&, context>> {
  using value_t = std::invoke_result_t<std::decay_t<Fn>&, context>;
  auto [ctx, cancel] = with_timeout(background(), d);
  auto f = detail_make_async<value_t>(spawn_options{}, [ctx = ctx, fn = std::forward<Fn>(fn)]() mutable { return fn(ctx); },
                                      site);
  auto r = f.get(ctx);
  cancel();
  return r;
}

// spawn_many() starts fn(i) for i in [0, n), each in its own fiber, and
// returns their futures in order.
template <class Fn>
auto spawn_many(std::size_t n, Fn fn, source_location site = source_location::current())
    -> std::vector<future<std::invoke_result_t<Fn&, std::size_t>>> {
  using value_t = std::invoke_result_t<Fn&, std::size_t>;
  std::vector<future<value_t>> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(detail_make_async<value_t>(spawn_options{}, [fn, i]() mutable { return fn(i); }, site));
  return out;
}

}  // namespace goro
