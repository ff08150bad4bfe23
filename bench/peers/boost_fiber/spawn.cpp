// SPDX-License-Identifier: MIT
// spawn: spawn + join of trivial fibers, Boost.Fiber side of
// bench/spawn_bench.cpp, on work_stealing over 2 threads (spawn_w2). Each
// fiber calls done() on a wait_group the main fiber waits on.
// Run at 200,000 fibers, not 1,000,000: Boost.Fiber gives every fiber a
// malloc'ed default-size stack and all of them are queued at once, so 1M
// takes 17-42 s and ~9 GB (shared/PEERS.md). The per-fiber figure is what
// is compared. After a warm-up run of a tenth of the size.
// Build: g++ -std=c++17 -O2 spawn.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <chrono>

namespace {

constexpr long n = 200'000;

double spawn_join_ns(long count) {
  peer::wait_group wg;
  wg.add(count);
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) boost::fibers::fiber([&wg] { wg.done(); }).detach();
  wg.wait();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  peer::run_work_stealing(2, false, [] {
    spawn_join_ns(n / 10);
    peer::reset_peak_rss();
    double ns = spawn_join_ns(n);
    std::printf("spawn_w2 %.2f ns/fiber\n", ns / n);
    std::printf("spawn_w2_fibers %ld count\n", n);
    peer::print_peak_rss("spawn_w2");
  });
}
