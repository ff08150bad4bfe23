// SPDX-License-Identifier: MIT
// worker_pool under load: a million tiny tasks on a thousand workers, and a rejecting pool under retrying producers.
#include "goro_test.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("a million tiny tasks across a thousand workers are each run and reported exactly once", "[pool]") {
  // 1,000,000 tasks in the default build; GORO_STRESS_SCALE scales the count
  // (the TSan and ASan runs use 0.1: 100,000 tasks). The workers stay 1,000.
  const long tasks = goro_test::scaled(1'000'000, 10'000);
  constexpr std::size_t pool_workers = 1'000;
  constexpr int producers = 8;

  goro_test::run_in_goro(4, [&] {
    auto runs = std::make_unique<std::atomic<std::uint8_t>[]>(static_cast<std::size_t>(tasks));
    auto reports = std::make_unique<std::atomic<std::uint8_t>[]>(static_cast<std::size_t>(tasks));
    for (long i = 0; i < tasks; ++i) {
      runs[i].store(0, std::memory_order_relaxed);
      reports[i].store(0, std::memory_order_relaxed);
    }
    std::atomic<long> not_accepted{0};
    std::atomic<long> failed_results{0};

    goro::worker_pool<long, long> pool(
        {.workers = pool_workers, .name = "stress"},
        [&runs](goro::context, long v) {
          runs[v].fetch_add(1, std::memory_order_relaxed);
          return v;
        },
        [&](goro::result<long> r) {
          if (!r.ok()) {
            failed_results.fetch_add(1, std::memory_order_relaxed);
            return;
          }
          reports[r.value()].fetch_add(1, std::memory_order_relaxed);
        });

    goro::wait_group submitted;
    submitted.add(producers);
    for (int p = 0; p < producers; ++p) {
      goro::spawn({.name = "stress-producer"}, [&, p] {
        long refused = 0;
        for (long v = p; v < tasks; v += producers)
          if (pool.submit(v) != goro::submit_status::accepted) ++refused;
        not_accepted.fetch_add(refused, std::memory_order_relaxed);
        submitted.done();
      });
    }
    submitted.wait();
    pool.wait();
    goro::pool_stats s = pool.shutdown(10s);

    long bad_runs = 0;
    long bad_reports = 0;
    for (long i = 0; i < tasks; ++i) {
      if (runs[i].load(std::memory_order_relaxed) != 1) ++bad_runs;
      if (reports[i].load(std::memory_order_relaxed) != 1) ++bad_reports;
    }
    CHECK(not_accepted.load() == 0);
    CHECK(failed_results.load() == 0);
    CHECK(bad_runs == 0);
    CHECK(bad_reports == 0);
    CHECK(s.workers == pool_workers);
    CHECK(s.completed == static_cast<std::uint64_t>(tasks));
    CHECK(s.failed + s.timed_out + s.cancelled + s.dropped + s.rejected == 0);
    CHECK(s.active + s.queued == 0);
  });
}

TEST_CASE("a rejecting pool under retrying producers (fibers and threads) runs every task once", "[pool]") {
  const long tasks = goro_test::scaled(200'000, 10'000);
  constexpr int fiber_producers = 6;
  constexpr int thread_producers = 2;
  constexpr int producers = fiber_producers + thread_producers;

  goro_test::run_in_goro(4, [&] {
    auto runs = std::make_unique<std::atomic<std::uint8_t>[]>(static_cast<std::size_t>(tasks));
    for (long i = 0; i < tasks; ++i) runs[i].store(0, std::memory_order_relaxed);
    std::atomic<std::uint64_t> rejections{0};
    std::atomic<long> other{0};

    goro::worker_pool<long, long> pool(
        {.workers = 64, .queue_capacity = 16, .overflow = goro::overflow_policy::reject, .name = "reject-stress"},
        [&runs](goro::context, long v) {
          runs[v].fetch_add(1, std::memory_order_relaxed);
          if (v % 1000 == 0) throw std::runtime_error("every thousandth fails");
          return v;
        },
        [](goro::result<long>) {});

    goro::wait_group submitted;
    submitted.add(producers);
    auto produce = [&](int p) {
      std::uint64_t refused = 0;
      for (long v = p; v < tasks; v += producers) {
        for (;;) {
          auto st = pool.submit(v);
          if (st == goro::submit_status::accepted) break;
          if (st != goro::submit_status::rejected) {
            other.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          ++refused;
          goro::yield();  // shed load: let the workers catch up, then retry
        }
      }
      rejections.fetch_add(refused, std::memory_order_relaxed);
      submitted.done();
    };
    for (int p = 0; p < fiber_producers; ++p) goro::spawn({.name = "reject-producer"}, [&, p] { produce(p); });
    std::vector<std::thread> threads;
    for (int p = fiber_producers; p < producers; ++p) threads.emplace_back([&, p] { produce(p); });
    submitted.wait();
    for (auto& t : threads) t.join();
    pool.wait();
    goro::pool_stats s = pool.shutdown(10s);

    long bad_runs = 0;
    for (long i = 0; i < tasks; ++i)
      if (runs[i].load(std::memory_order_relaxed) != 1) ++bad_runs;
    const std::uint64_t throwing = static_cast<std::uint64_t>((tasks + 999) / 1000);
    CHECK(other.load() == 0);
    CHECK(bad_runs == 0);
    CHECK(rejections.load() > 0);  // the producers really were faster than the pool
    CHECK(s.rejected == rejections.load());
    CHECK(s.failed == throwing);
    CHECK(s.completed == static_cast<std::uint64_t>(tasks) - throwing);
    CHECK(s.dropped + s.timed_out + s.cancelled == 0);
  });
}
