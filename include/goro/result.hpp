// SPDX-License-Identifier: MIT
// goro::result<T>: a value or the error that prevented it (an exception, a
// timeout, a cancellation), as returned by futures, await_all, timeout() and
// the worker pool.
#pragma once

#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

namespace goro {

template <class T>
class result {
 public:
  result() = default;  // an error-free, value-less result only as a placeholder
  static result success(T value) {
    result r;
    r.value_.emplace(std::move(value));
    return r;
  }
  static result failure(std::exception_ptr error) {
    result r;
    r.error_ = std::move(error);
    return r;
  }

  bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  // value() returns the value, or rethrows the error.
  T& value() & {
    if (!value_) rethrow();
    return *value_;
  }
  T&& value() && {
    if (!value_) rethrow();
    return std::move(*value_);
  }
  const T& value() const& {
    if (!value_) rethrow();
    return *value_;
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  [[noreturn]] void rethrow() const {
    if (error_) std::rethrow_exception(error_);
    throw std::logic_error("goro::result has neither value nor error");
  }
  std::optional<T> value_;
  std::exception_ptr error_;
};

template <>
class result<void> {
 public:
  result() = default;
  static result success() {
    result r;
    r.ok_ = true;
    return r;
  }
  static result failure(std::exception_ptr error) {
    result r;
    r.error_ = std::move(error);
    return r;
  }
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (ok_) return;
    if (error_) std::rethrow_exception(error_);
    throw std::logic_error("goro::result has neither value nor error");
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  bool ok_ = false;
  std::exception_ptr error_;
};

// Runs fn() and captures its outcome.
template <class Fn>
auto capture(Fn&& fn) -> result<std::invoke_result_t<Fn&>> {
  using value_t = std::invoke_result_t<Fn&>;
  try {
    if constexpr (std::is_void_v<value_t>) {
      fn();
      return result<void>::success();
    } else {
      return result<value_t>::success(fn());
    }
  } catch (...) {
    return result<value_t>::failure(std::current_exception());
  }
}

// An error for "the context ended first": a std::system_error carrying
// goro::context_errc (see context.hpp).
inline std::exception_ptr make_error(std::error_code e) {
  return std::make_exception_ptr(std::system_error(e));
}

}  // namespace goro
