// SPDX-License-Identifier: MIT
// switch: yield ping-pong, Boost.Fiber side of bench/switch_bench.cpp. Two
// fibers each call boost::this_fiber::yield() k times; one switch = one yield.
//   switch_w1  round_robin (Boost's default) on one thread
//   switch_w2  work_stealing on 2 threads
// Each after a warm-up run of a tenth of the size.
// Build: g++ -std=c++17 -O2 switch.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>

namespace {

constexpr long k = 1'000'000;  // yields per fiber

double ping_pong_ns(long n) {
  auto start = std::chrono::steady_clock::now();
  boost::fibers::fiber a([n] { for (long i = 0; i < n; ++i) boost::this_fiber::yield(); });
  boost::fibers::fiber b([n] { for (long i = 0; i < n; ++i) boost::this_fiber::yield(); });
  a.join();
  b.join();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
}

void measure(const char* name) {
  ping_pong_ns(k / 10);
  peer::reset_peak_rss();
  double ns = ping_pong_ns(k);
  std::printf("%s %.2f ns/switch\n", name, ns / (2.0 * k));
  peer::print_peak_rss(name);
}

}  // namespace

int main() {
  std::thread([] { measure("switch_w1"); }).join();  // a fresh thread: round_robin
  peer::run_work_stealing(2, false, [] { measure("switch_w2"); });
}
