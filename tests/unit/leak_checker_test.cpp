// SPDX-License-Identifier: MIT
// The leak checker: expect_no_leaked_fibers() and check_since() catch fibers left behind and stay quiet otherwise.
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// The message of the leaked_fibers_error fn throws, or nullopt when it throws nothing.
template <class Fn>
std::optional<std::string> leak_report(Fn&& fn) {
  try {
    fn();
  } catch (const goro::testing::leaked_fibers_error& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

bool parked_on(const std::string& name, goro::wait_reason reason) {
  for (auto& f : goro::list_fibers())
    if (f.name == name && f.state == goro::fiber_state::waiting && f.reason == reason) return true;
  return false;
}

goro::run_options with_workers(unsigned workers) {
  goro::run_options o;
  o.workers = workers;
  return o;
}

}  // namespace

TEST_CASE("expect_no_leaked_fibers throws naming a fiber left blocked") {
  unsigned workers = GORO_WORKERS();
  goro::run(with_workers(workers), [] {
    goro::wait_group never, finished;
    never.add(1);
    finished.add(1);
    goro::spawn({.name = "leaky-fiber"}, [&] {
      never.wait();
      finished.done();
    });
    REQUIRE(goro_test::eventually([] { return parked_on("leaky-fiber", goro::wait_reason::wait_group); }));

    auto start = std::chrono::steady_clock::now();
    auto report = leak_report([] { goro::testing::expect_no_leaked_fibers(100ms); });
    auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE(report);
    INFO(*report);
    CHECK(contains(*report, "1 leaked fiber"));
    CHECK(contains(*report, "\"leaky-fiber\""));
    CHECK(contains(*report, "sync.WaitGroup.Wait"));
    CHECK(contains(*report, "leak_checker_test.cpp"));
    CHECK(waited >= 90ms);  // it gave the fiber its grace period first
    CHECK(waited < 10s);

    // Release it: the test ends with nothing left and nothing unwound.
    never.done();
    finished.wait();
    CHECK_NOTHROW(goro::testing::expect_no_leaked_fibers());
  });
  CHECK(goro::live_fibers() == 0);
}

TEST_CASE("expect_no_leaked_fibers reports every fiber left behind") {
  unsigned workers = GORO_WORKERS();
  goro::run(with_workers(workers), [] {
    goro::wait_group never, finished;
    never.add(1);
    finished.add(3);
    for (const char* name : {"leak-one", "leak-two", "leak-three"})
      goro::spawn({.name = name}, [&] {
        never.wait();
        finished.done();
      });
    REQUIRE(goro_test::eventually([] {
      return parked_on("leak-one", goro::wait_reason::wait_group) &&
             parked_on("leak-two", goro::wait_reason::wait_group) &&
             parked_on("leak-three", goro::wait_reason::wait_group);
    }));
    auto report = leak_report([] { goro::testing::expect_no_leaked_fibers(20ms); });
    REQUIRE(report);
    INFO(*report);
    CHECK(contains(*report, "3 leaked fiber"));
    CHECK(contains(*report, "\"leak-one\""));
    CHECK(contains(*report, "\"leak-two\""));
    CHECK(contains(*report, "\"leak-three\""));
    never.done();
    finished.wait();
  });
}

TEST_CASE("expect_no_leaked_fibers is quiet when every fiber finished") {
  unsigned workers = GORO_WORKERS();
  goro::run(with_workers(workers), [] {
    const long n = goro_test::scaled(100, 10);
    goro::wait_group wg;
    wg.add(n);
    for (long i = 0; i < n; ++i)
      goro::spawn({.name = "short-lived"}, [&] {
        goro::yield();
        wg.done();
      });
    wg.wait();
    // done() is each fiber's last step but not its exit: the grace covers the gap.
    CHECK_FALSE(leak_report([] { goro::testing::expect_no_leaked_fibers(); }));
    CHECK(goro::live_fibers() == 1);
  });
  // Outside any runtime there is nothing to wait for.
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(leak_report([] { goro::testing::expect_no_leaked_fibers(2s); }));
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("expect_no_leaked_fibers waits out fibers that finish within the grace period") {
  unsigned workers = GORO_WORKERS();
  goro::run(with_workers(workers), [] {
    std::atomic<bool> finished{false};
    goro::spawn({.name = "slow-finisher"}, [&] {
      goro::sleep_for(50ms);
      finished = true;
    });
    auto start = std::chrono::steady_clock::now();
    auto report = leak_report([] { goro::testing::expect_no_leaked_fibers(2s); });
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK_FALSE(report);
    CHECK(finished.load());
    CHECK(goro::live_fibers() == 1);
    CHECK(waited >= 40ms);  // it did wait for the sleeper
    CHECK(waited < 1900ms); // and returned once it was gone, not at the deadline
  });
}

TEST_CASE("expect_no_leaked_fibers from a plain thread counts every fiber") {
  unsigned workers = GORO_WORKERS();
  goro::run(with_workers(workers), [] {
    goro::wait_group checked;
    checked.add(1);
    std::optional<std::string> report;
    std::thread checker([&] {
      report = leak_report([] { goro::testing::expect_no_leaked_fibers(20ms); });
      checked.done();
    });
    checked.wait();  // the main fiber is alive (parked) meanwhile
    checker.join();
    REQUIRE(report);
    INFO(*report);
    CHECK(contains(*report, "1 leaked fiber"));
    CHECK(contains(*report, "\"main\""));
  });
}

TEST_CASE("check_since reports fibers that run() had to unwind until they are acknowledged") {
  unsigned workers = GORO_WORKERS();
  goro::testing::leak_baseline base;
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;

  // Outlives run(): the leaked fiber is still parked on it when run() unwinds it.
  goro::wait_group never;
  never.add(1);
  std::atomic<int> destructors_run{0};
  struct on_unwind {
    std::atomic<int>* count;
    ~on_unwind() { count->fetch_add(1); }
  };
  goro::run(with_workers(workers), [&] {
    goro::spawn({.name = "unwound-leaker"}, [&] {
      on_unwind guard{&destructors_run};
      never.wait();
    });
    REQUIRE(goro_test::eventually([] { return parked_on("unwound-leaker", goro::wait_reason::wait_group); }));
  });
  CHECK(destructors_run.load() == 1);  // unwound, so its destructors ran
  CHECK(goro::live_fibers() == 0);
  CHECK(goro::runtime_metrics().unwound_at_shutdown == unwound_before + 1);

  auto report = leak_report([&] { goro::testing::check_since(base, 0ms); });
  REQUIRE(report);
  INFO(*report);
  CHECK(contains(*report, "1 fiber(s) were still alive"));
  CHECK(contains(*report, "\"unwound-leaker\""));
  CHECK(contains(*report, "sync.WaitGroup.Wait"));
  CHECK(contains(*report, "leak_checker_test.cpp"));

  goro::testing::acknowledge_unwound(1);
  CHECK_FALSE(leak_report([&] { goro::testing::check_since(base, 0ms); }));
  // `never` is not released: run() unwound its waiter's fiber without
  // unlinking the waiter, so a done() now would wake a dead fiber.
}

TEST_CASE("check_since is quiet after a clean run") {
  unsigned workers = GORO_WORKERS();
  goro::testing::leak_baseline base;
  goro_test::run_in_goro(workers, [] {
    goro::wait_group wg;
    wg.add(4);
    for (int i = 0; i < 4; ++i)
      goro::spawn([&] {
        goro::sleep_for(1ms);
        wg.done();
      });
    wg.wait();
  });
  CHECK_FALSE(leak_report([&] { goro::testing::check_since(base); }));
}
