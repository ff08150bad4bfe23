// SPDX-License-Identifier: MIT
// GORO_FATAL: a broken invariant inside goro (a goro bug, Go's throw): print the
// message and the live-fiber dump, then abort. GORO_ASSERT: the same, checked
// only when GORO_DEBUG_CHECKS is on. User misuse throws instead (errors.hpp).
#pragma once

#include "goro/config.hpp"

namespace goro::detail {
// Defined in detail/scheduler.hpp (needs the registry for the dump).
[[noreturn]] inline void fatal(const char* file, int line, const char* message) noexcept;
}  // namespace goro::detail

#define GORO_FATAL(message) ::goro::detail::fatal(__FILE__, __LINE__, (message))

#if GORO_DEBUG_CHECKS
#define GORO_ASSERT(cond, message)                                          \
  do {                                                                      \
    if (__builtin_expect(!(cond), 0)) GORO_FATAL("assertion failed: " #cond ": " message); \
  } while (0)
#else
#define GORO_ASSERT(cond, message) \
  do {                             \
  } while (0)
#endif
