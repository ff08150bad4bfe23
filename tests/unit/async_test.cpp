// SPDX-License-Identifier: MIT
// goro::async/future, await_all, timeout and spawn_many: values, void, captured exceptions, cancellation by context, deadlines that stop the fiber.
// Work that must be cancelled waits on its context's done channel; no test
// sleeps to let things settle.
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

using goro_test::parked;
using goro_test::until_parked;

std::string message_of(std::exception_ptr e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "?";
  }
}

std::error_code code_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& ex) {
    return ex.code();
  } catch (...) {
  }
  return {};
}

}  // namespace

TEST_CASE("async runs the function in a new fiber; get parks until the value is ready") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> gate{0};
    std::uint64_t main_id = goro::this_fiber::id();
    std::atomic<std::uint64_t> ran_on{0};
    goro::future<std::string> f = goro::async([gate, &ran_on] {
      ran_on = goro::this_fiber::id();
      gate.recv();
      return std::string("forty-two");
    });
    CHECK(f.valid());
    CHECK_FALSE(goro::future<int>().valid());
    REQUIRE(goro_test::eventually([&] { return ran_on.load() != 0; }));
    CHECK(ran_on.load() != main_id);
    CHECK_FALSE(f.ready());
    goro::future<std::string> copy = f;  // a shared handle
    goro::chan<std::string> got{1};
    goro::spawn({.name = "getter"}, [copy, got] { got.send(copy.get()); });
    REQUIRE(until_parked("getter", goro::wait_reason::future_get));
    CHECK(got.try_recv().status == goro::chan_op::would_block);
    gate.send(1);
    CHECK(got.recv() == "forty-two");
    CHECK(f.ready());
    // get() may be called again, on any copy.
    CHECK(f.get() == "forty-two");
    CHECK(copy.get() == "forty-two");
    auto r = f.get(goro::background());
    REQUIRE(r.ok());
    CHECK(r.value() == "forty-two");
  });
}

TEST_CASE("void futures report completion and exceptions") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    std::atomic<bool> ran{false};
    goro::future<void> f = goro::async([&] { ran = true; });
    f.get();
    CHECK(ran.load());
    CHECK(f.ready());
    auto r = f.get(goro::background());
    CHECK(r.ok());
    CHECK_NOTHROW(r.value());

    goro::future<void> bad = goro::async([] { throw std::runtime_error("void failed"); });
    CHECK_THROWS_WITH(bad.get(), "void failed");
    auto rb = bad.get(goro::background());
    CHECK_FALSE(rb.ok());
    CHECK(message_of(rb.error()) == "void failed");
  });
}

TEST_CASE("an exception from the async function is captured in the future, not a panic") {
  unsigned workers = GORO_WORKERS();
  // The default panic handler aborts: reaching the end of run() proves the
  // exception never escaped the fiber.
  goro_test::run_in_goro(workers, [] {
    goro::future<int> f = goro::async([]() -> int { throw std::invalid_argument("bad input"); });
    CHECK_THROWS_AS(f.get(), std::invalid_argument);
    CHECK_THROWS_WITH(f.get(), "bad input");  // every get() rethrows it
    CHECK(f.ready());
    goro::result<int> r = f.get(goro::background());
    CHECK_FALSE(r.ok());
    CHECK_FALSE(static_cast<bool>(r));
    CHECK(message_of(r.error()) == "bad input");
    CHECK_THROWS_AS(r.value(), std::invalid_argument);
  });
}

TEST_CASE("get(ctx) returns ctx's error when the context ends first; the async fiber keeps running") {
  unsigned workers = GORO_WORKERS();
  bool from_thread = GENERATE(false, true);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> gate{0};
    goro::future<int> f = goro::async([gate] {
      gate.recv();
      return 9;
    });
    goro::context ctx;
    goro::cancel_func cancel;
    std::tie(ctx, cancel) = goro::with_cancel(goro::background());
    goro::chan<goro::result<int>> got{1};
    goro::spawn({.name = "ctx-getter"}, [f, ctx, got] { got.send(f.get(ctx)); });
    REQUIRE(until_parked("ctx-getter", goro::wait_reason::future_get));
    if (from_thread) {
      std::thread t([&] { cancel(); });
      t.join();
    } else {
      cancel();
    }
    goro::result<int> r = got.recv().value();
    CHECK_FALSE(r.ok());
    CHECK(code_of(r.error()) == goro::context_errc::canceled);
    CHECK_THROWS_AS(r.value(), std::system_error);
    CHECK_FALSE(f.ready());
    gate.send(1);  // the function was not stopped: it still delivers
    CHECK(f.get() == 9);
    // And a deadline.
    auto [late, cancel_late] = goro::with_timeout(goro::background(), 20ms);
    goro::future<int> never_ready = goro::async([gate] { return gate.recv().value_or(-1); });
    auto rl = never_ready.get(late);
    CHECK(code_of(rl.error()) == goro::context_errc::deadline_exceeded);
    gate.close();
    CHECK(never_ready.get() == -1);
  });
}

TEST_CASE("await_all gives each future's success, value or error, in order") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    std::vector<goro::future<int>> futures;
    for (int i = 0; i < 30; ++i)
      futures.push_back(goro::async([i] {
        for (int k = 0; k < i % 4; ++k) goro::yield();
        if (i % 3 == 0) throw std::runtime_error("bad " + std::to_string(i));
        return i * 10;
      }));
    std::vector<goro::result<int>> all = goro::await_all(futures);
    REQUIRE(all.size() == futures.size());
    int wrong = 0;
    for (int i = 0; i < 30; ++i) {
      auto& r = all[static_cast<std::size_t>(i)];
      if (i % 3 == 0) {
        if (r.ok() || message_of(r.error()) != "bad " + std::to_string(i)) ++wrong;
      } else {
        if (!r.ok() || r.value() != i * 10 || r.error() != nullptr) ++wrong;
      }
    }
    CHECK(wrong == 0);

    std::vector<goro::future<void>> voids;
    std::atomic<int> ran{0};
    for (int i = 0; i < 5; ++i) voids.push_back(goro::async([&] { ran.fetch_add(1); }));
    auto vr = goro::await_all(voids);
    CHECK(ran.load() == 5);
    for (auto& r : vr) CHECK(r.ok());
  });
}

TEST_CASE("await_all(ctx) gives the context's error to futures not ready when it ends") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> gate{0};
    std::vector<goro::future<int>> futures;
    for (int i = 0; i < 10; ++i) {
      if (i % 2 == 0)
        futures.push_back(goro::async([i] { return i; }));
      else
        futures.push_back(goro::async([gate, i] {
          gate.recv();
          return i;
        }));
    }
    for (int i = 0; i < 10; i += 2) futures[static_cast<std::size_t>(i)].wait();
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    cancel();
    auto all = goro::await_all(ctx, futures);
    int wrong = 0;
    for (int i = 0; i < 10; ++i) {
      auto& r = all[static_cast<std::size_t>(i)];
      if (i % 2 == 0 && (!r.ok() || r.value() != i)) ++wrong;
      if (i % 2 == 1 && (r.ok() || code_of(r.error()) != goro::context_errc::canceled)) ++wrong;
    }
    CHECK(wrong == 0);
    gate.close();
    auto later = goro::await_all(futures);
    for (int i = 0; i < 10; ++i) CHECK(later[static_cast<std::size_t>(i)].value() == i);
  });
}

TEST_CASE("timeout returns the function's result when it finishes in time") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::result<int> r = goro::timeout(10s, [](goro::context ctx) {
      return ctx.deadline().has_value() && !ctx.err() ? 5 : -1;
    });
    REQUIRE(r.ok());
    CHECK(r.value() == 5);
    CHECK(goro::runtime_metrics().pending_timers == 0);  // the deadline's timer went with its context

    goro::result<int> thrown = goro::timeout(10s, [](goro::context) -> int { throw std::out_of_range("oops"); });
    CHECK_FALSE(thrown.ok());
    CHECK(message_of(thrown.error()) == "oops");

    goro::result<void> v = goro::timeout(10s, [](goro::context) {});
    CHECK(v.ok());
  });
}

TEST_CASE("timeout returns deadline_exceeded and cancels the fiber through its context, which then exits") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<std::error_code> fiber_saw{1};
    const auto start = clock_type::now();
    goro::result<int> r = goro::timeout(50ms, [fiber_saw](goro::context ctx) {
      goro::select(goro::on_done(ctx));  // work that only timeout() ending ctx stops
      fiber_saw.send(ctx.err());
      return 1;
    });
    const auto took = clock_type::now() - start;
    CHECK_FALSE(r.ok());
    CHECK(code_of(r.error()) == goro::context_errc::deadline_exceeded);
    CHECK(took >= 50ms);
    CHECK(took < 5s);
    CHECK(fiber_saw.recv() == goro::context_errc::deadline_exceeded);
    // No leak: the fiber has returned (the listener and run_in_goro also check).
    CHECK(goro_test::eventually([] { return goro::live_fibers() == 1; }));
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

TEST_CASE("timeout cannot kill a fiber that ignores its context: it reports the deadline and the fiber finishes later") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> release{0};
    goro::chan<int> finished{1};
    goro::result<int> r = goro::timeout(20ms, [release, finished](goro::context) {
      release.recv();  // ignores its context
      finished.send(1);
      return 3;
    });
    CHECK(code_of(r.error()) == goro::context_errc::deadline_exceeded);
    CHECK(finished.try_recv().status == goro::chan_op::would_block);
    release.send(1);
    CHECK(finished.recv() == 1);
  });
}

TEST_CASE("spawn_many starts n fibers running at once and returns their futures in order") {
  unsigned workers = GORO_WORKERS();
  static constexpr std::size_t n = 200;
  goro_test::run_in_goro(workers, [&] {
    std::atomic<std::size_t> arrived{0};
    goro::chan<int> all_here{0};
    auto futures = goro::spawn_many(n, [&arrived, all_here](std::size_t i) {
      // A barrier: nobody returns before all n have started, which only
      // works if each runs in its own fiber.
      if (arrived.fetch_add(1) + 1 == n) all_here.close();
      all_here.recv();
      return i * i;
    });
    REQUIRE(futures.size() == n);
    auto all = goro::await_all(futures);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (!all[i].ok() || all[i].value() != i * i) ++wrong;
    CHECK(wrong == 0);
    CHECK(arrived.load() == n);

    auto none = goro::spawn_many(0, [](std::size_t) { return 1; });
    CHECK(none.empty());
  });
}

TEST_CASE("a plain thread may wait on a future") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> gate{0};
    goro::future<int> f = goro::async([gate] {
      gate.recv();
      return 11;
    });
    goro::chan<int> got{1};
    std::thread t([f, got] { got.send(f.get()); });
    gate.send(1);
    CHECK(got.recv() == 11);
    t.join();
  });
}

// result<T> copies and moves member by member (result.hpp says why); they must
// still carry exactly the value or the error, in every combination.
TEST_CASE("result copies, moves and assigns carry the value or the error") {
  using goro::result;
  auto failed = [] { return result<std::string>::failure(std::make_exception_ptr(std::runtime_error("boom"))); };

  result<std::string> ok = result<std::string>::success("value");
  result<std::string> copy(ok);
  REQUIRE(copy.ok());
  CHECK(copy.value() == "value");
  CHECK(ok.value() == "value");

  result<std::string> moved(std::move(copy));
  REQUIRE(moved.ok());
  CHECK(moved.value() == "value");

  result<std::string> err = failed();
  result<std::string> err_copy(err);
  CHECK_FALSE(err_copy.ok());
  CHECK_THROWS_WITH(err_copy.value(), "boom");

  // ok <- error, error <- ok, ok <- ok, by copy and by move.
  result<std::string> target = result<std::string>::success("old");
  target = err;
  CHECK_FALSE(target.ok());
  CHECK_THROWS_WITH(target.value(), "boom");
  target = ok;
  REQUIRE(target.ok());
  CHECK(target.value() == "value");
  CHECK_FALSE(target.error());
  target = result<std::string>::success("newer");
  CHECK(target.value() == "newer");
  target = failed();
  CHECK_FALSE(target.ok());
  CHECK(target.error());
  const result<std::string>& same = target;
  target = same;  // self-assignment keeps it
  CHECK_FALSE(target.ok());

  // Move-only values move; such results are not copyable.
  static_assert(!std::is_copy_constructible_v<result<std::unique_ptr<int>>>);
  static_assert(!std::is_copy_assignable_v<result<std::unique_ptr<int>>>);
  static_assert(std::is_copy_assignable_v<result<std::string>>);
  struct fixed {
    const int v;
  };  // constructible, not assignable: neither is its result
  static_assert(std::is_move_constructible_v<result<fixed>> && !std::is_move_assignable_v<result<fixed>>);
  static_assert(std::is_nothrow_move_constructible_v<result<std::unique_ptr<int>>>);
  result<std::unique_ptr<int>> owner = result<std::unique_ptr<int>>::success(std::make_unique<int>(7));
  result<std::unique_ptr<int>> next(std::move(owner));
  REQUIRE(next.ok());
  CHECK(*next.value() == 7);
  result<std::unique_ptr<int>> last;
  last = std::move(next);
  REQUIRE(last.ok());
  CHECK(*last.value() == 7);
}
