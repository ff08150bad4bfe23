// SPDX-License-Identifier: MIT
// sleepers: 100,000 fibers each sleep a pseudo-random 1-100 ms
// (goro::sleep_for), then call done() on a wait_group the main fiber waits
// on. The durations come from a fixed-seed 64-bit LCG that the peers
// reproduce bit for bit, so all three sleep the same multiset. One iteration
// per run (Iterations(1)); counters:
//   total_ms      from the first spawn until the last sleeper has finished
//   overshoot_ms  total_ms - the longest sleep (100 ms): what the timer
//                 machinery and the spawn loop add
//   spawn_ms      the spawn loop alone (sleeps start as fibers first run, so
//                 a slow spawn loop shows up in the overshoot too)
//   peak_rss_mib
// BM_sleepers_warm (goro only) runs one untimed round first, so the timed
// round finds the stack pool and timer heaps warm: the difference from
// BM_sleepers is what a cold start (a fresh stack mapping per fiber) costs.
// Peers: bench/peers/go/sleepers.go, bench/peers/boost_fiber/sleepers.cpp.

#include "bench_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace {

// The peers' generator: x = x * 6364136223846793005 + 1442695040888963407
// (Knuth's MMIX LCG, mod 2^64), sleep = 1 + (x >> 33) % 100 ms; seed 42.
std::vector<int> sleep_ms(std::size_t n) {
  std::vector<int> out(n);
  std::uint64_t x = 42;
  for (auto& ms : out) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    ms = 1 + static_cast<int>((x >> 33) % 100);
  }
  return out;
}

// One round: spawn a sleeper per entry of sleeps and wait for all of them.
struct round_times {
  double spawn_ms, total_ms;
};
round_times sleepers_round(const std::vector<int>& sleeps) {
  goro::wait_group wg;
  wg.add(static_cast<std::int64_t>(sleeps.size()));
  const double t0 = goro_bench::wall_seconds();
  for (int ms : sleeps) {
    goro::spawn([&wg, ms] {
      goro::sleep_for(std::chrono::milliseconds(ms));
      wg.done();
    });
  }
  const double t1 = goro_bench::wall_seconds();
  wg.wait();
  const double t2 = goro_bench::wall_seconds();
  return {(t1 - t0) * 1e3, (t2 - t0) * 1e3};
}

void sleepers(benchmark::State& state, bool warm) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<int> sleeps = sleep_ms(n);
  const double longest = *std::max_element(sleeps.begin(), sleeps.end());
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    if (warm) sleepers_round(sleeps);
    for (auto _ : state) {
      const round_times t = sleepers_round(sleeps);
      state.counters["total_ms"] = t.total_ms;
      state.counters["overshoot_ms"] = t.total_ms - longest;
      state.counters["spawn_ms"] = t.spawn_ms;
    }
  });
}

void BM_sleepers(benchmark::State& state) { sleepers(state, false); }
void BM_sleepers_warm(benchmark::State& state) { sleepers(state, true); }

}  // namespace

// The stack pool is process-wide, so only the first benchmark of the process
// starts cold, as the peers' single run does: that is 2 workers, the row
// compared with Go (GOMAXPROCS=2) and Boost.Fiber (work_stealing/2). The
// 1-worker run comes second and may find stacks the first one left cached.
BENCHMARK(BM_sleepers)
    ->ArgNames({"fibers", "workers"})
    ->Args({100'000, 2})
    ->Args({100'000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK(BM_sleepers_warm)
    ->Apply([](benchmark::internal::Benchmark* b) { goro_bench::sweep_tasks_workers(b, 100'000, "fibers"); })
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
