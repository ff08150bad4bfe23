// SPDX-License-Identifier: MIT
// memory: what parked fibers cost, Boost.Fiber side of bench/memory_bench.cpp,
// on work_stealing over 2 threads with suspend = true (idle threads sleep;
// with Boost's default, false, they spin and the idle figure is meaningless).
//   parked  100,000 fibers (not 1,000,000: at ~9.6 KiB each, 1M needs ~10 GB
//           and minutes; shared/PEERS.md) each bump an atomic counter and
//           block on one shared wait_group; the main fiber polls the counter
//           every 1 ms until all have arrived.
//           bytes_per_fiber = (VmRSS then - VmRSS before) / N.
//   idle    10,000 fibers parked the same way while the main fiber sleeps 2 s;
//           idle_cpu_fraction = process CPU time (user + sys, getrusage)
//           during the sleep / wall time of the sleep.
// Build: g++ -std=c++17 -O2 memory.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>

namespace {

using namespace std::chrono_literals;

void park_fibers(long n, std::atomic<long>& arrived, peer::wait_group& release, peer::wait_group& all) {
  all.add(n);
  for (long i = 0; i < n; ++i) {
    boost::fibers::fiber([&] {
      arrived.fetch_add(1, std::memory_order_relaxed);
      release.wait();
      all.done();
    }).detach();
  }
  while (arrived.load(std::memory_order_relaxed) < n) boost::this_fiber::sleep_for(1ms);
}

void parked() {
  constexpr long n = 100'000;
  std::atomic<long> arrived{0};
  peer::wait_group release, all;
  release.add(1);
  peer::reset_peak_rss();
  double rss0 = peer::status_kib("VmRSS") * 1024;
  auto start = std::chrono::steady_clock::now();
  park_fibers(n, arrived, release, all);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  double rss1 = peer::status_kib("VmRSS") * 1024;
  release.done();
  all.wait();
  std::printf("parked_bytes_per_fiber %.1f B\n", (rss1 - rss0) / n);
  std::printf("parked_fibers %ld count\n", n);
  std::printf("parked_park_all %.1f ms\n", ms);
  peer::print_peak_rss("parked");
}

void idle() {
  constexpr long n = 10'000;
  std::atomic<long> arrived{0};
  peer::wait_group release, all;
  release.add(1);
  park_fibers(n, arrived, release, all);
  double cpu0 = peer::cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  boost::this_fiber::sleep_for(2s);
  double cpu1 = peer::cpu_seconds();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  release.done();
  all.wait();
  std::printf("idle_cpu_fraction %.5f fraction\n", (cpu1 - cpu0) / wall);
}

}  // namespace

int main() {
  // idle first, as in memory_bench.cpp (see there).
  peer::run_work_stealing(2, true, [] {
    idle();
    parked();
  });
}
