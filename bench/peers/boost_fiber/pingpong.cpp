// SPDX-License-Identifier: MIT
// pingpong: unbuffered channel ping-pong, Boost.Fiber side of
// bench/pingpong_bench.cpp. One fiber pushes i on `ping` and pops it back
// from `pong`; the other pops from ping and pushes back on pong
// (boost::fibers::unbuffered_channel). 1,000,000 round trips:
//   pingpong_w1  round_robin (Boost's default) on one thread
//   pingpong_w2  work_stealing on 2 threads
// Each after a warm-up run of a tenth of the size.
// Build: g++ -std=c++17 -O2 pingpong.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>

namespace {

constexpr long n = 1'000'000;  // round trips

double round_trips_ns(long count) {
  using channel = boost::fibers::unbuffered_channel<long>;
  channel ping, pong;
  auto start = std::chrono::steady_clock::now();
  boost::fibers::fiber a([&] {
    for (long i = 0; i < count; ++i) {
      ping.push(i);
      pong.value_pop();
    }
  });
  boost::fibers::fiber b([&] {
    for (long i = 0; i < count; ++i) pong.push(ping.value_pop());
  });
  a.join();
  b.join();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
}

void measure(const char* name) {
  round_trips_ns(n / 10);
  peer::reset_peak_rss();
  double ns = round_trips_ns(n);
  std::printf("%s %.2f ns/round_trip\n", name, ns / n);
  peer::print_peak_rss(name);
}

}  // namespace

int main() {
  std::thread([] { measure("pingpong_w1"); }).join();  // a fresh thread: round_robin
  peer::run_work_stealing(2, false, [] { measure("pingpong_w2"); });
}
