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
  // Copies and moves go member by member, never as one block: an optional
  // just built stores its engaged flag as one byte, and the implicit copy of
  // a small trivially copyable optional loads it back at once inside a 16-byte
  // word, a load that cannot be forwarded from the byte store and waits for it
  // to commit. run_pool paid that on every result it sent (perf: a third of
  // the send's samples on that load).
  result(const result& other) requires std::is_copy_constructible_v<T> : error_(other.error_) {
    if (other.value_.has_value()) value_.emplace(*other.value_);
  }
  result(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) : error_(std::move(other.error_)) {
    if (other.value_.has_value()) value_.emplace(std::move(*other.value_));
  }
  result& operator=(const result& other) requires std::is_copy_constructible_v<T> && std::is_copy_assignable_v<T> {
    if (this != &other) assign(other.value_, other.error_);
    return *this;
  }
  result& operator=(result&& other) noexcept(std::is_nothrow_move_constructible_v<T> &&
                                             std::is_nothrow_move_assignable_v<T>)
    requires std::is_move_constructible_v<T> && std::is_move_assignable_v<T>
  {
    if (this != &other) assign(std::move(other.value_), std::move(other.error_));
    return *this;
  }
  ~result() = default;

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
  template <class Value, class Error>
  void assign(Value&& value, Error&& error) {
    if (!value.has_value())
      value_.reset();
    else if (value_.has_value())
      *value_ = *std::forward<Value>(value);
    else
      value_.emplace(*std::forward<Value>(value));
    error_ = std::forward<Error>(error);
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
