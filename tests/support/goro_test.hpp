// SPDX-License-Identifier: MIT
// Helpers shared by goro's tests: run a body inside a runtime and check that
// it left no fiber behind, scale sizes for sanitizer builds, and wait for
// conditions with a deadline instead of sleeping.
#pragma once

#include <goro/goro.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

namespace goro_test {

// GORO_STRESS_SCALE (default 1; the sanitizer presets set 0.1) scales loop
// counts so the suite fits CI under TSan/ASan.
inline double stress_scale() {
  static const double scale = [] {
    const char* env = std::getenv("GORO_STRESS_SCALE");
    double v = env != nullptr ? std::atof(env) : 1.0;
    return v > 0 ? v : 1.0;
  }();
  return scale;
}
inline long scaled(long n, long minimum = 1) {
  long v = static_cast<long>(static_cast<double>(n) * stress_scale());
  return v < minimum ? minimum : v;
}

// Runs fn as the main fiber of a runtime with `workers` workers, then checks
// (still inside the runtime) that fn left no other fiber alive.
template <class Fn>
auto run_in_goro(unsigned workers, Fn&& fn) {
  goro::run_options options;
  options.workers = workers;
  // goro's own tests run with the starvation watchdog on: a fiber that holds
  // its worker for a second is reported on stderr.
  options.starvation_threshold = std::chrono::milliseconds(1000);
  return goro::run(options, [&] {
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      goro::testing::expect_no_leaked_fibers();
    } else {
      auto result = fn();
      goro::testing::expect_no_leaked_fibers();
      return result;
    }
  });
}

// Polls pred (yielding or sleeping briefly between tries) until it holds or
// the timeout passes; returns whether it held. For conditions that have no
// event to wait on (e.g. "the fiber has parked"), never to "let things settle".
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (goro::this_fiber::in_fiber())
      goro::this_fiber::sleep_for(std::chrono::microseconds(200));
    else
      std::this_thread::yield();
  }
  return true;
}

// How many live fibers called `name` are parked for `reason`.
inline std::size_t parked(const std::string& name, goro::wait_reason reason) {
  std::size_t n = 0;
  for (const auto& f : goro::list_fibers())
    if (f.name == name && f.state == goro::fiber_state::waiting && f.reason == reason) ++n;
  return n;
}

// Waits until `n` fibers called `name` are parked for `reason` (no event
// says "has parked", so this polls with a deadline; see eventually()).
inline bool until_parked(const std::string& name, goro::wait_reason reason, std::size_t n = 1) {
  return eventually([&] { return parked(name, reason) == n; });
}

}  // namespace goro_test

// Worker counts every runtime test runs with: 1 exposes missed yields and
// lost wake-ups, more than the cores exposes races.
#define GORO_WORKERS() GENERATE(1u, 2u, 4u)
