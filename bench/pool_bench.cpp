// SPDX-License-Identifier: MIT
// pool: 1,000,000 tasks through 1,000 workers and a queue of 2,000. Each task
// adds its number to a shared atomic sum (checked at the end), so the figure
// is the pool's own overhead. Every variant's time covers starting the
// workers, submitting every task, waiting for all of them and stopping the
// workers, as the peers' does. Reports items_per_second (items = tasks),
// "per_task" and "peak_rss_mib".
//
// BM_pool         goro::worker_pool<int64, void>, policy block (submit waits
//                 for room), results to a callback: the row compared with the
//                 peers. The pool also hands each task a context (its
//                 worker's: no task_timeout here), keeps per-worker stats
//                 and counts outstanding tasks for wait(): work the peers
//                 do not do.
// BM_pool_chan    the Go peer's exact form: a chan of capacity 2,000 and
//                 1,000 fibers receiving from it until it is closed.
// BM_run_pool     goro::run_pool (Go's streaming-pool idiom): results come
//                 back on a channel that the main fiber drains.
// BM_pool_policy  worker_pool under each overflow policy (0 block, 1 drop,
//                 2 reject): the main fiber submits 1,000,000 tasks as fast
//                 as submit() returns; "accepted_fraction" says how many were
//                 run (block: all). items = submit() calls. goro only.
// Peers: bench/peers/go/pool.go, bench/peers/boost_fiber/pool.cpp.

#include "bench_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace {

constexpr std::int64_t kTasks = 1'000'000;
constexpr std::size_t kWorkers = 1'000;
constexpr std::size_t kQueue = 2'000;
constexpr std::int64_t kExpected = kTasks * (kTasks - 1) / 2;

// Runs `tasks` through a worker_pool with the given policy; returns how many
// were accepted. Adds each accepted task's number to sum.
std::int64_t worker_pool_run(std::int64_t tasks, goro::overflow_policy policy, std::atomic<std::int64_t>& sum) {
  goro::worker_pool<std::int64_t, void> pool(
      {.workers = kWorkers, .queue_capacity = kQueue, .overflow = policy, .name = "bench"},
      [&sum](const goro::context&, std::int64_t v) { sum.fetch_add(v, std::memory_order_relaxed); },
      [](goro::result<void>) {});
  std::int64_t accepted = 0;
  for (std::int64_t i = 0; i < tasks; ++i) accepted += pool.submit(i) == goro::submit_status::accepted ? 1 : 0;
  pool.wait();
  pool.shutdown(std::chrono::seconds(10));
  return accepted;
}

void chan_pool_run(std::int64_t tasks, std::atomic<std::int64_t>& sum) {
  goro::chan<std::int64_t> queue{kQueue};
  goro::wait_group wg;
  wg.add(static_cast<std::int64_t>(kWorkers));
  for (std::size_t w = 0; w < kWorkers; ++w) {
    goro::spawn([&] {
      while (auto v = queue.recv()) sum.fetch_add(*v, std::memory_order_relaxed);
      wg.done();
    });
  }
  for (std::int64_t i = 0; i < tasks; ++i) queue.send(i);
  queue.close();
  wg.wait();
}

void run_pool_run(std::int64_t tasks, std::atomic<std::int64_t>& sum) {
  goro::chan<std::int64_t> in{kQueue};
  goro::spawn([in, tasks] {
    for (std::int64_t i = 0; i < tasks; ++i) in.send(i);
    in.close();
  });
  auto out = goro::run_pool(goro::background(), kWorkers, in, [&sum](const goro::context&, std::int64_t v) {
    sum.fetch_add(v, std::memory_order_relaxed);
    return v;
  });
  for (auto& r : out) (void)r.value();
}

// One of the three forms above as a benchmark over kTasks.
template <class Run>
void pool_bench(benchmark::State& state, Run run) {
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(0), [&] {
    std::atomic<std::int64_t> warm{0};
    run(kTasks / 10, warm);  // untimed warm-up, as the peers do
    for (auto _ : state) {
      std::atomic<std::int64_t> sum{0};
      run(kTasks, sum);
      if (sum.load() != kExpected) {
        state.SkipWithError("pool: wrong sum");
        break;
      }
    }
  });
  const double tasks = static_cast<double>(state.iterations()) * static_cast<double>(kTasks);
  state.SetItemsProcessed(static_cast<std::int64_t>(tasks));
  state.counters["per_task"] = goro_bench::seconds_per(tasks);
}

void BM_pool(benchmark::State& state) {
  pool_bench(state, [](std::int64_t n, std::atomic<std::int64_t>& sum) {
    worker_pool_run(n, goro::overflow_policy::block, sum);
  });
}
void BM_pool_chan(benchmark::State& state) { pool_bench(state, chan_pool_run); }
void BM_run_pool(benchmark::State& state) { pool_bench(state, run_pool_run); }

void BM_pool_policy(benchmark::State& state) {
  const auto policy = static_cast<goro::overflow_policy>(state.range(0));
  double accepted = 0;
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      std::atomic<std::int64_t> sum{0};
      accepted += static_cast<double>(worker_pool_run(kTasks, policy, sum));
    }
  });
  const double submits = static_cast<double>(state.iterations()) * static_cast<double>(kTasks);
  state.SetItemsProcessed(static_cast<std::int64_t>(submits));
  state.counters["per_submit"] = goro_bench::seconds_per(submits);
  state.counters["accepted_fraction"] = submits > 0 ? accepted / submits : 0;
}

}  // namespace

BENCHMARK(BM_pool)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_pool_chan)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_run_pool)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_pool_policy)
    ->Apply([](benchmark::internal::Benchmark* b) {
      b->ArgNames({"policy", "workers"});
      for (std::int64_t w : goro_bench::worker_counts())
        for (std::int64_t p = 0; p < 3; ++p) b->Args({p, w});
    })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
