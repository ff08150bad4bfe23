// SPDX-License-Identifier: MIT
// goro::blocking: a blocking call runs on the elastic pool while only its
// fiber waits; results, exceptions, cancellation, elasticity, shutdown.
#include "goro_test.hpp"

#include <goro/blocking.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Shortens the pool's keep-alive for one test, restoring it after.
struct keep_alive_override {
  explicit keep_alive_override(std::chrono::milliseconds ms)
      : saved(goro::detail::blocking_pool::keep_alive_ms().exchange(ms.count())) {}
  ~keep_alive_override() { goro::detail::blocking_pool::keep_alive_ms().store(saved); }
  std::int64_t saved;
};

// A gate plain threads wait on until the test opens it.
struct gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

std::error_code context_error_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& err) {
    return err.code();
  } catch (...) {
  }
  return {};
}

}  // namespace

TEST_CASE("blocking returns fn's value, void and move-only results", "[blocking]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    CHECK(goro::blocking([] { return 42; }) == 42);
    std::string s = goro::blocking([] { return std::string("from the pool"); });
    CHECK(s == "from the pool");
    auto p = goro::blocking([] { return std::make_unique<int>(7); });
    CHECK(*p == 7);
    int side = 0;
    goro::blocking([&] { side = 5; });  // by reference: the fiber waits
    CHECK(side == 5);
    // It really ran on another thread.
    auto here = std::this_thread::get_id();
    CHECK(goro::blocking([] { return std::this_thread::get_id(); }) != here);
  });
}

TEST_CASE("blocking rethrows fn's exception in the fiber", "[blocking]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    CHECK_THROWS_WITH(goro::blocking([]() -> int { throw std::runtime_error("boom"); }), "boom");
    auto r = goro::blocking(goro::background(), []() -> int { throw std::logic_error("bad"); });
    CHECK_FALSE(r.ok());
    CHECK_THROWS_AS(r.value(), std::logic_error);
    auto ok = goro::blocking(goro::background(), [] { return 3; });
    REQUIRE(ok.ok());
    CHECK(ok.value() == 3);
  });
}

TEST_CASE("blocking calls run concurrently", "[blocking]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    // N calls that can only finish once all N run at the same time.
    constexpr int n = 8;
    std::latch all_running(n);
    goro::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn([&] {
        goro::blocking([&] { all_running.arrive_and_wait(); });
        wg.done();
      });
    wg.wait();
  });
}

TEST_CASE("N blocking sleeps of 100 ms take well under N * 100 ms", "[blocking]") {
  goro_test::run_in_goro(2, [] {
    constexpr int n = 8;
    auto start = std::chrono::steady_clock::now();
    goro::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn([&] {
        goro::blocking([] { std::this_thread::sleep_for(100ms); });
        wg.done();
      });
    wg.wait();
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 100ms);
    CHECK(took < n * 100ms / 2);  // serial would be 800 ms
  });
}

TEST_CASE("a blocking call parks only its fiber: the worker runs others", "[blocking]") {
  goro_test::run_in_goro(1, [] {
    auto opened = std::make_shared<gate>();
    goro::wait_group wg;
    wg.add(1);
    goro::spawn([&] {
      goro::blocking([&] { opened->wait(); });
      wg.done();
    });
    // On one worker: this runs only if the blocking call left the worker free.
    goro::spawn([&] { opened->release(); });
    wg.wait();
    CHECK(goro::runtime_metrics().blocked_on(goro::wait_reason::blocking_call) == 0);
  });
}

TEST_CASE("blocking(ctx) returns ctx.err() as soon as ctx is cancelled", "[blocking]") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    // The call outlives the wait: it owns (shares) what it uses.
    auto opened = std::make_shared<gate>();
    auto finished = std::make_shared<std::atomic<bool>>(false);
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    goro::chan<goro::result<int>> out(1);
    goro::spawn([&, ctx = ctx] {
      out.send(goro::blocking(ctx, [opened, finished] {
        opened->wait();
        finished->store(true);
        return 1;
      }));
    });
    REQUIRE(goro_test::eventually(
        [] { return goro::runtime_metrics().blocked_on(goro::wait_reason::blocking_call) == 1; }));
    cancel();
    goro::result<int> r = out.recv().value();
    CHECK_FALSE(r.ok());
    CHECK(context_error_of(r.error()) == goro::context_errc::canceled);
    CHECK_FALSE(finished->load());  // returned early: the call still runs
    CHECK(goro::blocking_pool_stats().in_flight == 1);
    opened->release();
    REQUIRE(goro_test::eventually([] { return goro::blocking_pool_stats().in_flight == 0; }));
    CHECK(finished->load());
  });
}

TEST_CASE("blocking(ctx) ends at the context's deadline; an ended context runs nothing", "[blocking]") {
  goro_test::run_in_goro(2, [] {
    auto opened = std::make_shared<gate>();
    auto [ctx, cancel] = goro::with_timeout(goro::background(), 30ms);
    auto r = goro::blocking(ctx, [opened] { opened->wait(); });
    CHECK(context_error_of(r.error()) == goro::context_errc::deadline_exceeded);
    bool ran = false;
    auto again = goro::blocking(ctx, [&ran] { ran = true; });
    CHECK(context_error_of(again.error()) == goro::context_errc::deadline_exceeded);
    CHECK_FALSE(ran);
    opened->release();  // run() would wait for it at shutdown anyway
    cancel();
  });
}

TEST_CASE("the blocking pool is elastic: threads start on demand and retire when idle", "[blocking]") {
  keep_alive_override short_keep_alive(30ms);
  goro_test::run_in_goro(2, [] {
    auto before = goro::blocking_pool_stats();
    constexpr int n = 4;
    std::latch all_running(n);
    goro::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn([&] {
        goro::blocking([&] { all_running.arrive_and_wait(); });
        wg.done();
      });
    wg.wait();
    auto busy = goro::blocking_pool_stats();
    CHECK(busy.threads_started - before.threads_started >= n);
    // Idle past the keep-alive, every thread retires.
    REQUIRE(goro_test::eventually([] { return goro::blocking_pool_stats().threads == 0; }));
    auto after = goro::blocking_pool_stats();
    CHECK(after.threads_retired - before.threads_retired >= n);
    CHECK(after.in_flight == 0);
    // And a new call starts a thread again.
    CHECK(goro::blocking([] { return 1; }) == 1);
    CHECK(goro::blocking_pool_stats().threads_started > after.threads_started);
  });
}

TEST_CASE("run() waits for an in-flight blocking call whose caller gave up", "[blocking]") {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  goro_test::run_in_goro(2, [&] {
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    goro::spawn([&, ctx = ctx] {
      (void)goro::blocking(ctx, [finished] {
        std::this_thread::sleep_for(50ms);  // the call that outlives its caller
        finished->store(true);
      });
    });
    REQUIRE(goro_test::eventually(
        [] { return goro::runtime_metrics().blocked_on(goro::wait_reason::blocking_call) == 1; }));
    cancel();
    REQUIRE(goro_test::eventually(
        [] { return goro::runtime_metrics().blocked_on(goro::wait_reason::blocking_call) == 0; }));
  });
  CHECK(finished->load());
}

TEST_CASE("the deadlock detector does not fire during a blocking call", "[blocking][deadlock]") {
  unsigned workers = GORO_WORKERS();
  goro::run_options options;
  options.workers = workers;
  options.detect_deadlock = true;
  options.deadlock_grace = 30ms;
  int v = 0;
  CHECK_NOTHROW(v = goro::run(options, [] {
                  // Every fiber is parked for several grace periods.
                  return goro::blocking([] {
                    std::this_thread::sleep_for(200ms);
                    return 9;
                  });
                }));
  CHECK(v == 9);
}

TEST_CASE("blocking from a plain thread calls fn inline", "[blocking]") {
  auto here = std::this_thread::get_id();
  CHECK(goro::blocking([] { return std::this_thread::get_id(); }) == here);
  CHECK_THROWS_AS(goro::blocking([]() -> int { throw std::out_of_range("x"); }), std::out_of_range);
  auto r = goro::blocking(goro::background(), [] { return 2; });
  CHECK(r.value() == 2);
}

TEST_CASE("a fiber left in blocking() when run() returns: run() waits for the call, then unwinds it", "[blocking]") {
  unsigned workers = GORO_WORKERS();
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  std::atomic<bool> finished{false};
  goro::run_options options;
  options.workers = workers;
  goro::run(options, [&] {
    goro::spawn({.name = "left-in-blocking"}, [&] {
      goro::blocking([&] {
        std::this_thread::sleep_for(50ms);
        finished = true;
      });
    });
    REQUIRE(goro_test::eventually(
        [] { return goro::runtime_metrics().blocked_on(goro::wait_reason::blocking_call) == 1; }));
  });
  CHECK(finished);  // run() did not return before the call did
  const auto unwound = goro::runtime_metrics().unwound_at_shutdown - unwound_before;
  CHECK(unwound == 1);
  goro::testing::acknowledge_unwound(unwound);  // the deliberate leak
}
