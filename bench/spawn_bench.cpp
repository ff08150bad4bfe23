// SPDX-License-Identifier: MIT
// spawn: spawn + join of 1,000,000 trivial fibers per iteration. The main
// fiber adds N to a wait_group, spawns N fibers that each call done(), and
// waits. Reports items_per_second (items = fibers), "per_fiber" (seconds per
// fiber, spawn + run + exit + join) and "peak_rss_mib". An untimed run of a
// tenth of the size comes first, as in the peers.
//
// On 1 worker nothing runs until the main fiber blocks in wait(), so all N
// fibers (and their stacks) exist at once; on 2 workers the second worker
// steals and runs them while the first is still spawning.
// Peers: bench/peers/go/spawn.go, bench/peers/boost_fiber/spawn.cpp.

#include "bench_support.hpp"

#include <cstdint>

namespace {

void BM_spawn(benchmark::State& state) {
  const std::int64_t tasks = state.range(0);
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    auto spawn_join = [](std::int64_t n) {
      goro::wait_group wg;
      wg.add(n);
      for (std::int64_t i = 0; i < n; ++i) goro::spawn([&wg] { wg.done(); });
      wg.wait();
    };
    spawn_join(tasks / 10);  // untimed warm-up, as the peers do
    for (auto _ : state) spawn_join(tasks);
  });
  const double fibers = static_cast<double>(state.iterations()) * static_cast<double>(tasks);
  state.SetItemsProcessed(static_cast<std::int64_t>(fibers));
  state.counters["per_fiber"] = goro_bench::seconds_per(fibers);
}

}  // namespace

BENCHMARK(BM_spawn)
    ->Apply([](benchmark::internal::Benchmark* b) { goro_bench::sweep_tasks_workers(b, 1'000'000); })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
