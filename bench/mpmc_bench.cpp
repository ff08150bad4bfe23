// SPDX-License-Identifier: MIT
// mpmc: a buffered channel (capacity 1024) shared by 4 producers and 4
// consumers; 10,000,000 ints in all per iteration (2.5M per producer). The
// producers' wait_group closes the channel once all have sent; consumers
// receive until it is closed and drained and add up what they got, and the
// total is checked. Reports items_per_second (items = ints delivered; the
// summary prints it as Mops/s, higher is better) and "peak_rss_mib".
// Peers: bench/peers/go/mpmc.go, bench/peers/boost_fiber/mpmc.cpp.

#include "bench_support.hpp"

#include <atomic>
#include <cstdint>

namespace {

constexpr std::int64_t kItems = 10'000'000;
constexpr int kProducers = 4;
constexpr int kConsumers = 4;
constexpr std::size_t kCapacity = 1024;

// Returns the sum of everything received (must be sum(0..n-1)).
std::int64_t mpmc(std::int64_t n) {
  goro::chan<std::int64_t> c{kCapacity};
  goro::wait_group producers, consumers;
  std::atomic<std::int64_t> total{0};
  const std::int64_t per_producer = n / kProducers;
  producers.add(kProducers);
  consumers.add(kConsumers);
  for (int p = 0; p < kProducers; ++p) {
    goro::spawn([&, p] {
      const std::int64_t first = p * per_producer;
      for (std::int64_t i = first; i < first + per_producer; ++i) c.send(i);
      producers.done();
    });
  }
  for (int q = 0; q < kConsumers; ++q) {
    goro::spawn([&] {
      std::int64_t sum = 0;
      while (auto v = c.recv()) sum += *v;
      total.fetch_add(sum, std::memory_order_relaxed);  // read after consumers.wait(), which orders it
      consumers.done();
    });
  }
  producers.wait();
  c.close();
  consumers.wait();
  return total.load(std::memory_order_relaxed);
}

void BM_mpmc(benchmark::State& state) {
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(0), [&] {
    mpmc(kItems / 10);  // untimed warm-up, as the peers do
    for (auto _ : state) {
      if (mpmc(kItems) != kItems * (kItems - 1) / 2) {
        state.SkipWithError("mpmc: wrong sum");
        break;
      }
    }
  });
  state.SetItemsProcessed(state.iterations() * kItems);
}

}  // namespace

BENCHMARK(BM_mpmc)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
