// SPDX-License-Identifier: MIT
// goro's exception hierarchy. User misuse with defined semantics throws one of
// these, and its what() names the fiber that did it (id, name, spawn site).
// Broken internal invariants never throw: they GORO_FATAL (detail/assert.hpp).
//
//   goro::error            base of everything goro throws
//   goro::misuse_error     an API used against its contract (wait_group count < 0, ...)
//   goro::deadlock_error   run(): every fiber is blocked and nothing can wake them
//   goro::channel_closed   send on / close of a closed channel
#pragma once

#include <stdexcept>
#include <string>

namespace goro {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class misuse_error : public error {
 public:
  using error::error;
};

class deadlock_error : public error {
 public:
  using error::error;
};

class channel_closed : public error {
 public:
  using error::error;
};

namespace detail {
// Describes the calling fiber (or thread) for error messages; defined in
// detail/scheduler.hpp, where fibers are known.
inline std::string describe_current_fiber();

template <class Error>
[[noreturn]] void throw_misuse(const std::string& what) {
  throw Error(what + " (in " + describe_current_fiber() + ")");
}
}  // namespace detail

}  // namespace goro
