// SPDX-License-Identifier: MIT
// pool: 1,000,000 tasks through 1,000 worker fibers popping from a
// boost::fibers::buffered_channel, Boost.Fiber side of bench/pool_bench.cpp,
// on work_stealing over 2 threads. The queue is 2048 (buffered_channel needs
// a power of two and holds capacity - 1, so 2047 usable; Go and goro use
// 2000). Each task adds its number to a shared atomic sum (checked). The time
// covers starting the workers, pushing every task, closing the channel and
// joining the workers. After a warm-up run of a tenth of the size.
// Build: g++ -std=c++17 -O2 pool.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace {

constexpr std::int64_t tasks = 1'000'000;
constexpr int workers = 1'000;

std::int64_t pool(std::int64_t n, double& ns) {
  std::atomic<std::int64_t> sum{0};
  auto start = std::chrono::steady_clock::now();
  boost::fibers::buffered_channel<std::int64_t> q{2048};
  std::vector<boost::fibers::fiber> ws;
  ws.reserve(workers);
  for (int w = 0; w < workers; ++w) {
    ws.emplace_back([&q, &sum] {
      std::int64_t v = 0;
      while (q.pop(v) == boost::fibers::channel_op_status::success) sum.fetch_add(v, std::memory_order_relaxed);
    });
  }
  for (std::int64_t i = 0; i < n; ++i) q.push(i);
  q.close();
  for (auto& f : ws) f.join();
  ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  return sum.load();
}

}  // namespace

int main() {
  int rc = 0;
  peer::run_work_stealing(2, false, [&] {
    double ns = 0;
    pool(tasks / 10, ns);
    peer::reset_peak_rss();
    if (pool(tasks, ns) != tasks * (tasks - 1) / 2) {
      std::fprintf(stderr, "pool: wrong sum\n");
      rc = 1;
      return;
    }
    std::printf("pool %.2f ns/task\n", ns / tasks);
    std::printf("pool_ms %.2f ms\n", ns / 1e6);
    peer::print_peak_rss("pool");
  });
  return rc;
}
