// SPDX-License-Identifier: MIT
// sleepers: 100,000 fibers each sleep a pseudo-random 1-100 ms
// (boost::this_fiber::sleep_for), then call done() on a wait_group;
// Boost.Fiber side of bench/sleepers_bench.cpp, on work_stealing over 2
// threads with suspend = true (a sleeping scheduler must not spin). The
// durations come from the same fixed-seed LCG as goro's.
//   sleepers_total      from the first spawn until the last sleeper finished
//   sleepers_overshoot  total - the longest sleep
//   sleepers_spawn      the spawn loop alone
// Build: g++ -std=c++17 -O2 sleepers.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace {

constexpr std::size_t n = 100'000;

// x = x * 6364136223846793005 + 1442695040888963407 (mod 2^64),
// sleep = 1 + (x >> 33) % 100 ms, seed 42 (bench/sleepers_bench.cpp).
std::vector<int> sleep_ms(std::size_t count) {
  std::vector<int> out(count);
  std::uint64_t x = 42;
  for (auto& ms : out) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ms = 1 + static_cast<int>((x >> 33) % 100);
  }
  return out;
}

}  // namespace

int main() {
  peer::run_work_stealing(2, true, [] {
    const std::vector<int> sleeps = sleep_ms(n);
    const double longest = *std::max_element(sleeps.begin(), sleeps.end());
    peer::reset_peak_rss();
    peer::wait_group wg;
    wg.add(static_cast<long>(n));
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    for (int ms : sleeps) {
      boost::fibers::fiber([&wg, ms] {
        boost::this_fiber::sleep_for(std::chrono::milliseconds(ms));
        wg.done();
      }).detach();
    }
    auto t1 = clock::now();
    wg.wait();
    auto t2 = clock::now();
    auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::printf("sleepers_total %.2f ms\n", ms(t2 - t0));
    std::printf("sleepers_overshoot %.2f ms\n", ms(t2 - t0) - longest);
    std::printf("sleepers_spawn %.2f ms\n", ms(t1 - t0));
    peer::print_peak_rss("sleepers");
  });
}
