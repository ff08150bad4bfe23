// SPDX-License-Identifier: MIT
// select: one consumer selects over 4 buffered channels (capacity 64), each
// fed by its own producer fiber with 1,000,000 ints; 4,000,000 messages per
// iteration, each received through goro::select with 4 on_recv cases. The
// sum is checked. Reports items_per_second (items = messages), "per_msg" and
// "peak_rss_mib".
// Peers: bench/peers/go/select.go (a 4-case select statement),
// bench/peers/boost_fiber/select.cpp (no select in Boost.Fiber: try_pop
// polling + yield).

#include "bench_support.hpp"

#include <array>
#include <cstdint>
#include <optional>

namespace {

constexpr std::int64_t kMessages = 4'000'000;
constexpr std::size_t kChannels = 4;
constexpr std::size_t kCapacity = 64;

std::int64_t select_run(std::int64_t n) {
  std::array<goro::chan<std::int64_t>, kChannels> cs;
  for (auto& c : cs) c = goro::chan<std::int64_t>(kCapacity);
  const std::int64_t per = n / static_cast<std::int64_t>(kChannels);
  for (std::size_t k = 0; k < kChannels; ++k) {
    goro::spawn([c = cs[k], per] {
      for (std::int64_t i = 0; i < per; ++i) c.send(i);
    });
  }
  std::int64_t sum = 0;
  auto take = [&sum](std::optional<std::int64_t> v) { sum += v.value_or(0); };
  for (std::int64_t m = 0; m < per * static_cast<std::int64_t>(kChannels); ++m)
    goro::select(goro::on_recv(cs[0], take), goro::on_recv(cs[1], take), goro::on_recv(cs[2], take),
                 goro::on_recv(cs[3], take));
  return sum;
}

void BM_select(benchmark::State& state) {
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(0), [&] {
    select_run(kMessages / 10);  // untimed warm-up, as the peers do
    const std::int64_t per = kMessages / static_cast<std::int64_t>(kChannels);
    for (auto _ : state) {
      if (select_run(kMessages) != static_cast<std::int64_t>(kChannels) * per * (per - 1) / 2) {
        state.SkipWithError("select: wrong sum");
        break;
      }
    }
  });
  const double msgs = static_cast<double>(state.iterations()) * static_cast<double>(kMessages);
  state.SetItemsProcessed(static_cast<std::int64_t>(msgs));
  state.counters["per_msg"] = goro_bench::seconds_per(msgs);
}

}  // namespace

BENCHMARK(BM_select)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
