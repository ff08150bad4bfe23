// SPDX-License-Identifier: MIT
// skynet: 1,000,000 leaves in a 10-ary tree (1,111,111 fibers in all). Each
// inner node spawns 10 children and returns the sum of what they report; a
// leaf reports its number. The sum must be 499999500000.
//
// BM_skynet       a child writes its slot of a parent-owned array of 10
//                 results and calls done() on the parent's wait_group; the
//                 parent wait()s, then adds the slots up. (The Go peer runs
//                 this exact form as "skynet_wg".)
// BM_skynet_chan  the classic form (github.com/atemerev/skynet): each node
//                 makes an unbuffered goro::chan and its 10 children send
//                 their sums on it; the parent receives 10 values. (The Go and
//                 Boost.Fiber peers' "skynet".)
// Reports wall time per tree (ms, the Time column) and "peak_rss_mib". An
// untimed tree of a tenth of the size runs first, as in the peers.
// Peers: bench/peers/go/skynet.go, bench/peers/boost_fiber/skynet.cpp.

#include "bench_support.hpp"

#include <array>
#include <cstdint>
#include <numeric>

namespace {

constexpr std::int64_t kExpected = 499'999'500'000;

std::int64_t skynet(std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  const std::int64_t child = size / 10;
  std::array<std::int64_t, 10> results{};
  goro::wait_group wg;
  wg.add(10);
  for (std::int64_t i = 0; i < 10; ++i) {
    goro::spawn([&results, &wg, i, sub = num + i * child, child] {
      results[static_cast<std::size_t>(i)] = skynet(sub, child);
      wg.done();
    });
  }
  wg.wait();
  return std::accumulate(results.begin(), results.end(), std::int64_t{0});
}

// Classic form: report num's subtree sum on c.
void skynet_chan(const goro::chan<std::int64_t>& c, std::int64_t num, std::int64_t size) {
  if (size == 1) {
    c.send(num);
    return;
  }
  const std::int64_t child = size / 10;
  goro::chan<std::int64_t> rc{0};
  for (std::int64_t i = 0; i < 10; ++i)
    goro::spawn([rc, sub = num + i * child, child] { skynet_chan(rc, sub, child); });
  std::int64_t sum = 0;
  for (int i = 0; i < 10; ++i) sum += rc.recv().value_or(0);
  c.send(sum);
}

// Runs one form over `leaves` leaves after an untimed warm-up tree.
template <class Tree>
void run_skynet(benchmark::State& state, Tree tree) {
  const std::int64_t leaves = state.range(0);
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    tree(leaves / 10);  // untimed warm-up, as the peers do
    for (auto _ : state) {
      if (tree(leaves) != kExpected && leaves == 1'000'000) {
        state.SkipWithError("skynet: wrong sum");
        break;
      }
    }
  });
  state.counters["fibers"] = benchmark::Counter(static_cast<double>(leaves + (leaves - 1) / 9));
}

// The root is a fiber too, as in the classic `go skynet(c, 0, 1000000, 10)`.
void BM_skynet(benchmark::State& state) {
  run_skynet(state, [](std::int64_t n) {
    std::int64_t result = 0;
    goro::wait_group root;
    root.add(1);
    goro::spawn([&] {
      result = skynet(0, n);
      root.done();
    });
    root.wait();
    return result;
  });
}

void BM_skynet_chan(benchmark::State& state) {
  run_skynet(state, [](std::int64_t n) {
    goro::chan<std::int64_t> c{0};
    goro::spawn([c, n] { skynet_chan(c, 0, n); });
    return c.recv().value_or(0);
  });
}

}  // namespace

BENCHMARK(BM_skynet)
    ->Apply([](benchmark::internal::Benchmark* b) { goro_bench::sweep_tasks_workers(b, 1'000'000, "leaves"); })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_skynet_chan)
    ->Apply([](benchmark::internal::Benchmark* b) { goro_bench::sweep_tasks_workers(b, 1'000'000, "leaves"); })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
