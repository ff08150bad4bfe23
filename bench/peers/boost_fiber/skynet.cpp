// SPDX-License-Identifier: MIT
// skynet: 1,000,000 leaves in a 10-ary tree (1,111,111 fibers), Boost.Fiber
// side of bench/skynet_bench.cpp, on work_stealing over 2 threads. The
// classic channel form, as in Boost's own performance/fiber/skynet_*: each
// node makes a buffered_channel, starts 10 detached children that push their
// sum into it, and pops 10 values. After a warm-up tree of 100,000 leaves.
// The sum must be 499999500000.
// Build: g++ -std=c++17 -O2 skynet.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace {

using channel = boost::fibers::buffered_channel<std::uint64_t>;

void skynet(channel& c, std::uint64_t num, std::uint64_t size) {
  if (size == 1) {
    c.push(num);
    return;
  }
  channel rc{16};
  const std::uint64_t child = size / 10;
  for (std::uint64_t i = 0; i < 10; ++i)
    boost::fibers::fiber(skynet, std::ref(rc), num + i * child, child).detach();
  std::uint64_t sum = 0;
  for (int i = 0; i < 10; ++i) sum += rc.value_pop();
  c.push(sum);
}

std::uint64_t run(std::uint64_t leaves, double& ms) {
  auto start = std::chrono::steady_clock::now();
  channel c{2};
  boost::fibers::fiber(skynet, std::ref(c), 0, leaves).detach();
  std::uint64_t r = c.value_pop();
  ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace

int main() {
  int rc = 0;
  peer::run_work_stealing(2, false, [&] {
    double ms = 0;
    run(100'000, ms);
    peer::reset_peak_rss();
    std::uint64_t r = run(1'000'000, ms);
    if (r != 499'999'500'000ULL) {
      std::fprintf(stderr, "skynet: wrong sum %llu\n", static_cast<unsigned long long>(r));
      rc = 1;
      return;
    }
    std::printf("skynet %.2f ms\n", ms);
    peer::print_peak_rss("skynet");
  });
  return rc;
}
