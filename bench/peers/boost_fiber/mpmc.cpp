// SPDX-License-Identifier: MIT
// mpmc: a buffered channel shared by 4 producer and 4 consumer fibers,
// 10,000,000 ints in all, Boost.Fiber side of bench/mpmc_bench.cpp, on
// work_stealing over 2 threads. boost::fibers::buffered_channel needs a power
// of two and holds capacity - 1 values: 1024 here (1023 usable). The channel
// is closed once every producer has joined; consumers pop until it is closed
// and the total is checked. After a warm-up run of a tenth of the size.
// Build: g++ -std=c++17 -O2 mpmc.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace {

constexpr std::int64_t items = 10'000'000;
constexpr int producers = 4, consumers = 4;

std::int64_t mpmc(std::int64_t count, double& seconds) {
  boost::fibers::buffered_channel<std::int64_t> c{1024};
  std::atomic<std::int64_t> total{0};
  const std::int64_t per = count / producers;
  auto start = std::chrono::steady_clock::now();
  std::vector<boost::fibers::fiber> prod, cons;
  for (int p = 0; p < producers; ++p) {
    prod.emplace_back([&c, per, first = p * per] {
      for (std::int64_t i = first; i < first + per; ++i) c.push(i);
    });
  }
  for (int q = 0; q < consumers; ++q) {
    cons.emplace_back([&c, &total] {
      std::int64_t sum = 0, v = 0;
      while (c.pop(v) == boost::fibers::channel_op_status::success) sum += v;
      total.fetch_add(sum, std::memory_order_relaxed);
    });
  }
  for (auto& f : prod) f.join();
  c.close();
  for (auto& f : cons) f.join();
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return total.load();
}

}  // namespace

int main() {
  int rc = 0;
  peer::run_work_stealing(2, false, [&] {
    double s = 0;
    mpmc(items / 10, s);
    peer::reset_peak_rss();
    if (mpmc(items, s) != items * (items - 1) / 2) {
      std::fprintf(stderr, "mpmc: wrong sum\n");
      rc = 1;
      return;
    }
    std::printf("mpmc %.3f Mops/s\n", static_cast<double>(items) / s / 1e6);
    std::printf("mpmc_ms %.2f ms\n", s * 1e3);
    peer::print_peak_rss("mpmc");
  });
  return rc;
}
