// SPDX-License-Identifier: MIT
// switch: yield ping-pong. Two fibers each call goro::yield() kYields times;
// one switch = one yield handing the worker to another fiber. Reports
// items_per_second (items = switches), "per_switch" (seconds per switch) and
// "peak_rss_mib".
//
// On 1 worker the two fibers strictly alternate, so this is the cost of one
// fiber -> scheduler -> fiber hand-over. On 2 workers they may run in parallel
// (each yield then finds its own fiber again), so the figure is wall time per
// switch of the pair: a throughput, not a latency.
// Peers: bench/peers/go/switch.go, bench/peers/boost_fiber/switch.cpp.

#include "bench_support.hpp"

#include <cstdint>

namespace {

constexpr std::int64_t kYields = 100'000;  // per fiber and benchmark iteration

void BM_switch(benchmark::State& state) {
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(0), [&] {
    for (auto _ : state) {
      goro::wait_group wg;
      wg.add(2);
      for (int f = 0; f < 2; ++f) {
        goro::spawn([&wg] {
          for (std::int64_t i = 0; i < kYields; ++i) goro::yield();
          wg.done();
        });
      }
      wg.wait();
    }
  });
  const double switches = static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(kYields);
  state.SetItemsProcessed(static_cast<std::int64_t>(switches));
  state.counters["per_switch"] = goro_bench::seconds_per(switches);
}

}  // namespace

BENCHMARK(BM_switch)->Apply(goro_bench::sweep_workers)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
