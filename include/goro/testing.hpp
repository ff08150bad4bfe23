// SPDX-License-Identifier: MIT
// goro::testing: Go's goleak for goro, framework-neutral.
//
//   goro::testing::expect_no_leaked_fibers(grace)  throws leaked_fibers_error
//   goro::testing::leak_baseline / check_since()   for per-test listeners
//
// A leak shows in one of two ways: a fiber still alive (the check runs inside
// a runtime, or a runtime is still running), or a fiber that run() had to
// unwind because it was still alive when run()'s function returned.
#pragma once

#include "goro/diagnostics.hpp"
#include "goro/errors.hpp"
#include "goro/this_fiber.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>

namespace goro::testing {

class leaked_fibers_error : public goro::error {
 public:
  using goro::error::error;
};

// expect_no_leaked_fibers() waits up to `grace` for every fiber other than
// the caller to finish (like goleak's retries: fibers that are about to end
// get the time to), then throws leaked_fibers_error whose message is the dump
// of what is left. From a plain thread, every fiber counts.
// Blocks: sleeps the caller in short steps (a fiber parks, a thread sleeps).
inline void expect_no_leaked_fibers(std::chrono::milliseconds grace = std::chrono::milliseconds(1000)) {
  const std::size_t allowed = this_fiber::in_fiber() ? 1 : 0;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto step = std::chrono::microseconds(100);
  while (live_fibers() > allowed) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::ostringstream msg;
      msg << "goro: " << (live_fibers() - allowed) << " leaked fiber(s) still alive after " << grace.count()
          << " ms:\n\n";
      dump_fibers(msg);
      throw leaked_fibers_error(msg.str());
    }
    this_fiber::sleep_for(step);
    if (step < std::chrono::milliseconds(10)) step *= 2;
  }
}

// Fibers a test leaks on purpose (to test shutdown or the leak checker
// itself) are acknowledged so check_since() does not count them.
inline std::atomic<std::uint64_t>& acknowledged_unwound() noexcept {
  static std::atomic<std::uint64_t> count{0};
  return count;
}
inline void acknowledge_unwound(std::uint64_t n) noexcept {
  acknowledged_unwound().fetch_add(n, std::memory_order_relaxed);  // relaxed: read by the same test thread
}

// A baseline for per-test checks: how many fibers run() had unwound so far.
struct leak_baseline {
  std::uint64_t unwound = detail::process().unwound_at_shutdown.load(std::memory_order_relaxed) -
                          acknowledged_unwound().load(std::memory_order_relaxed);
};

// check_since() throws leaked_fibers_error when a run() since `base` unwound
// fibers that were still alive when its function returned, or when fibers
// are still alive now (after `grace`).
inline void check_since(const leak_baseline& base, std::chrono::milliseconds grace = std::chrono::milliseconds(1000)) {
  std::uint64_t now = detail::process().unwound_at_shutdown.load(std::memory_order_relaxed) -
                      acknowledged_unwound().load(std::memory_order_relaxed);
  if (now != base.unwound) {
    std::string report;
    {
      std::lock_guard lock(detail::process().mu);
      report = detail::process().last_unwound_report;
    }
    throw leaked_fibers_error("goro: " + std::to_string(now - base.unwound) +
                              " fiber(s) were still alive when goro::run()'s function returned and had to be "
                              "unwound; the last such run left:\n" +
                              report);
  }
  expect_no_leaked_fibers(grace);
}

}  // namespace goro::testing
