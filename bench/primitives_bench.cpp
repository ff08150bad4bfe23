// SPDX-License-Identifier: MIT
// primitives: goro-only microbenchmarks of the synchronisation pieces that
// the workload benchmarks lean on (no peer runs these).
//
// BM_wait_group_add_done  `fibers` fibers each do 1,000,000 / fibers
//                         add(1) + done() pairs on one shared wait_group
//                         (contended atomic), then the main fiber wait()s.
//                         items = add+done pairs.
// BM_mutex                `fibers` fibers each lock a goro::mutex, bump a
//                         shared counter and unlock, 1,000,000 times in all;
//                         every 64th critical section yields while holding
//                         the lock, so waiters really park (contention
//                         rather than a lucky fast path). items = lock+unlock.
// BM_timer_arm_cancel     goro::timer(1 h) then stop(): allocation, heap
//                         insert and removal. items = timers.
// BM_timer_reset          one goro::timer re-armed with reset(1 h): heap
//                         removal + insert without allocation.
// BM_context_cancel       `children` fibers each derive with_cancel(root)
//                         and block on their context's done(); the figure is
//                         the time from the root's cancel() until every child
//                         has woken and finished, per child.

#include "bench_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kOps = 1'000'000;

void BM_wait_group_add_done(benchmark::State& state) {
  const std::int64_t fibers = state.range(0);
  const std::int64_t per = kOps / fibers;
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      goro::wait_group wg, all;
      all.add(fibers);
      for (std::int64_t f = 0; f < fibers; ++f) {
        goro::spawn([&] {
          for (std::int64_t i = 0; i < per; ++i) {
            wg.add(1);
            wg.done();
          }
          all.done();
        });
      }
      all.wait();
      wg.wait();  // count is zero: the fast path
    }
  });
  state.SetItemsProcessed(state.iterations() * per * fibers);
  state.counters["per_op"] = goro_bench::seconds_per(static_cast<double>(state.iterations() * per * fibers));
}

void BM_mutex(benchmark::State& state) {
  const std::int64_t fibers = state.range(0);
  const std::int64_t per = kOps / fibers;
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      goro::mutex mu;
      std::int64_t counter = 0;
      goro::wait_group wg;
      wg.add(fibers);
      for (std::int64_t f = 0; f < fibers; ++f) {
        goro::spawn([&] {
          for (std::int64_t i = 0; i < per; ++i) {
            std::lock_guard lock(mu);
            ++counter;
            if ((i & 63) == 63) goro::yield();  // hold the lock across a switch now and then
          }
          wg.done();
        });
      }
      wg.wait();
      if (counter != per * fibers) {
        state.SkipWithError("mutex: lost update");
        break;
      }
    }
  });
  state.SetItemsProcessed(state.iterations() * per * fibers);
  state.counters["per_op"] = goro_bench::seconds_per(static_cast<double>(state.iterations() * per * fibers));
}

void BM_timer_arm_cancel(benchmark::State& state) {
  goro_bench::run_in_goro(state, state.range(0), [&] {
    for (auto _ : state) {
      for (std::int64_t i = 0; i < kOps; ++i) {
        goro::timer t(1h);
        benchmark::DoNotOptimize(t.stop());
      }
    }
  });
  state.SetItemsProcessed(state.iterations() * kOps);
  state.counters["per_op"] = goro_bench::seconds_per(static_cast<double>(state.iterations() * kOps));
}

void BM_timer_reset(benchmark::State& state) {
  goro_bench::run_in_goro(state, state.range(0), [&] {
    goro::timer t(1h);
    for (auto _ : state) {
      for (std::int64_t i = 0; i < kOps; ++i) benchmark::DoNotOptimize(t.reset(1h));
    }
    t.stop();
  });
  state.SetItemsProcessed(state.iterations() * kOps);
  state.counters["per_op"] = goro_bench::seconds_per(static_cast<double>(state.iterations() * kOps));
}

void BM_context_cancel(benchmark::State& state) {
  const std::int64_t children = state.range(0);
  goro_bench::run_in_goro(state, state.range(1), [&] {
    for (auto _ : state) {
      state.PauseTiming();  // only cancel -> all woken is timed
      auto [root, cancel] = goro::with_cancel(goro::background());
      std::atomic<std::int64_t> parked{0};
      goro::wait_group wg;
      wg.add(children);
      for (std::int64_t c = 0; c < children; ++c) {
        goro::spawn([&, root = root] {
          auto [ctx, stop] = goro::with_cancel(root);
          parked.fetch_add(1, std::memory_order_relaxed);
          (void)ctx.done().recv();  // nullopt once cancelled
          stop();
          wg.done();
        });
      }
      while (parked.load(std::memory_order_relaxed) < children) goro::sleep_for(1ms);
      goro::sleep_for(2ms);  // let the last arrivals actually park
      state.ResumeTiming();
      cancel();
      wg.wait();
    }
  });
  state.SetItemsProcessed(state.iterations() * children);
  state.counters["per_child"] = goro_bench::seconds_per(static_cast<double>(state.iterations() * children));
}

void fibers_workers(benchmark::internal::Benchmark* b) {
  b->ArgNames({"fibers", "workers"});
  for (std::int64_t w : goro_bench::worker_counts())
    for (std::int64_t f : {2, 8, 64}) b->Args({f, w});
}

}  // namespace

BENCHMARK(BM_wait_group_add_done)->Apply(fibers_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_mutex)->Apply(fibers_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_timer_arm_cancel)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_timer_reset)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_context_cancel)
    ->Apply([](benchmark::internal::Benchmark* b) {
      b->ArgNames({"children", "workers"});
      for (std::int64_t w : goro_bench::worker_counts())
        for (std::int64_t c : {1'000, 100'000}) b->Args({c, w});
    })
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

BENCHMARK_MAIN();
