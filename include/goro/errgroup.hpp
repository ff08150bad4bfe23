// SPDX-License-Identifier: MIT
// goro::errgroup: Go's golang.org/x/sync/errgroup. A group of fibers working
// on subtasks of one task; the first failure cancels the rest.
#pragma once

#include "goro/context.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/errors.hpp"
#include "goro/result.hpp"
#include "goro/semaphore.hpp"
#include "goro/spawn.hpp"
#include "goro/wait_group.hpp"

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>

namespace goro {

// errgroup runs functions in fibers and collects the first error.
//
// A function fails by throwing, or by returning a non-empty std::error_code
// (reported as std::system_error). Go's WithContext: construct the group
// with a parent context; context() is then cancelled at the first failure
// and when wait() returns.
//
// Example:
//   goro::errgroup g(parent);
//   for (auto& url : urls) g.go([&, url] { fetch(g.context(), url); });
//   if (auto err = g.wait()) std::rethrow_exception(err);
class errgroup {
 public:
  errgroup() = default;
  explicit errgroup(const goro::context& parent) {
    auto [ctx, cancel] = with_cancel(parent);
    ctx_ = ctx;
    cancel_ = cancel;
  }
  errgroup(const errgroup&) = delete;
  errgroup& operator=(const errgroup&) = delete;
  ~errgroup() { cancel_(); }

  const goro::context& context() const noexcept { return ctx_; }

  // set_limit() bounds the number of active functions; go() then blocks
  // while the limit is reached. n <= 0 removes the limit. Call it before go().
  void set_limit(std::int64_t n) {
    limit_.reset();
    if (n > 0) limit_.emplace(n);
  }

  // go() runs fn in a new fiber (after waiting for a slot under a limit).
  template <class Fn>
  void go(Fn&& fn, source_location site = source_location::current()) {
    if (limit_) limit_->acquire();
    start(std::forward<Fn>(fn), site);
  }
  // try_go() starts fn only if a slot is free now; returns whether it did.
  template <class Fn>
  bool try_go(Fn&& fn, source_location site = source_location::current()) {
    if (limit_ && !limit_->try_acquire()) return false;
    start(std::forward<Fn>(fn), site);
    return true;
  }

  // wait() blocks until every function has returned, then returns the first
  // error (null when all succeeded) and cancels context().
  std::exception_ptr wait() {
    wg_.wait();
    cancel_();
    detail::spin_guard lock(lock_);
    return first_error_;
  }

 private:
  template <class Fn>
  void start(Fn&& fn, source_location site) {
    wg_.add(1);
    spawn(
        spawn_options{},
        [this, fn = std::forward<Fn>(fn)]() mutable {
          std::exception_ptr error;
          try {
            if constexpr (std::is_same_v<std::invoke_result_t<decltype(fn)&>, std::error_code>) {
              if (std::error_code e = fn()) error = std::make_exception_ptr(std::system_error(e));
            } else {
              fn();
            }
          } catch (...) {
            error = std::current_exception();
          }
          if (error) fail(error);
          if (limit_) limit_->release();
          wg_.done();
        },
        site);
  }
  void fail(std::exception_ptr error) {
    bool first = false;
    {
      detail::spin_guard lock(lock_);
      if (!first_error_) {
        first_error_ = error;
        first = true;
      }
    }
    if (first) cancel_();
  }

  goro::context ctx_;
  cancel_func cancel_;
  wait_group wg_;
  std::optional<semaphore> limit_;
  detail::spinlock lock_;
  std::exception_ptr first_error_ GORO_GUARDED_BY(lock_);
};

}  // namespace goro
