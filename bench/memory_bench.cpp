// SPDX-License-Identifier: MIT
// memory: what parked fibers cost. One iteration each (Iterations(1)); use
// --benchmark_repetitions for a median.
//
// BM_parked: 1,000,000 fibers parked at once. Each fiber bumps an atomic
//   counter and blocks on one shared wait_group ("release"); the main fiber
//   polls the counter every 1 ms (goro::sleep_for) until all N have arrived,
//   reads VmRSS, then releases them and joins them. Counters:
//     bytes_per_fiber  (VmRSS when all are parked - VmRSS before spawning) / N
//                      (target <= 4.5 KiB = 4608 B)
//     pte_bytes_per_fiber  the same for page tables (VmPTE; not in VmRSS)
//     park_all_ms      from the first spawn until all N had arrived
//     peak_rss_mib
// BM_idle: 10,000 fibers parked on a wait_group while the main fiber sleeps
//   2 s in goro::sleep_for. Counter idle_cpu_fraction = process CPU time
//   (user + sys, getrusage) during those 2 s / 2 s wall, i.e. a fraction of
//   one core (target < 0.01); idle_worker_parks counts the times a worker went
//   to sleep in that window (each one follows a wake-up).
// Peers: bench/peers/go/memory.go, bench/peers/boost_fiber/memory.cpp.

#include "bench_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace {

using namespace std::chrono_literals;

// Spawns n fibers that arrive (bump `arrived`) and block on `release`; each
// calls all.done() once released. Returns when all n have arrived.
void park_fibers(std::int64_t n, std::atomic<std::int64_t>& arrived, goro::wait_group& release, goro::wait_group& all) {
  all.add(n);
  for (std::int64_t i = 0; i < n; ++i) {
    goro::spawn([&] {
      arrived.fetch_add(1, std::memory_order_relaxed);
      release.wait();
      all.done();
    });
  }
  while (arrived.load(std::memory_order_relaxed) < n) goro::sleep_for(1ms);
}

void BM_parked(benchmark::State& state) {
  const std::int64_t fibers = state.range(0);
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      std::atomic<std::int64_t> arrived{0};
      goro::wait_group release, all;
      release.add(1);
      const double rss0 = goro_bench::rss_bytes();
      const double pte0 = goro_bench::page_table_bytes();
      const double t0 = goro_bench::wall_seconds();
      park_fibers(fibers, arrived, release, all);
      const double t1 = goro_bench::wall_seconds();
      const double rss1 = goro_bench::rss_bytes();
      const double pte1 = goro_bench::page_table_bytes();
      release.done();
      all.wait();
      const auto n = static_cast<double>(fibers);
      state.counters["bytes_per_fiber"] = (rss1 - rss0) / n;
      state.counters["pte_bytes_per_fiber"] = (pte1 - pte0) / n;
      state.counters["park_all_ms"] = (t1 - t0) * 1e3;
    }
  });
}

void BM_idle(benchmark::State& state) {
  const std::int64_t fibers = state.range(0);
  constexpr auto idle_for = 2s;
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      std::atomic<std::int64_t> arrived{0};
      goro::wait_group release, all;
      release.add(1);
      park_fibers(fibers, arrived, release, all);
      const std::uint64_t parks0 = goro::runtime_metrics().worker_parks;
      const double cpu0 = goro_bench::process_cpu_seconds();
      const double t0 = goro_bench::wall_seconds();
      goro::sleep_for(idle_for);
      const double cpu1 = goro_bench::process_cpu_seconds();
      const double t1 = goro_bench::wall_seconds();
      const std::uint64_t parks1 = goro::runtime_metrics().worker_parks;
      release.done();
      all.wait();
      state.counters["idle_cpu_fraction"] = (cpu1 - cpu0) / (t1 - t0);
      state.counters["idle_worker_parks"] = static_cast<double>(parks1 - parks0);
    }
  });
}

}  // namespace

// The peers run with 2 threads (GOMAXPROCS=2, Boost.Fiber work_stealing/2):
// so do these. BM_idle runs first (registration order), in all three
// programs: it measures the idle steady state, and after BM_parked's million
// fibers the process has clean-up to do in the background (goro returns the
// free stacks to the OS once the pool has been quiet for a second; Go's GC
// and scavenger run), which would land in the idle window.
BENCHMARK(BM_idle)
    ->ArgNames({"fibers", "workers"})
    ->Args({10'000, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_parked)
    ->ArgNames({"fibers", "workers"})
    ->Args({1'000'000, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
