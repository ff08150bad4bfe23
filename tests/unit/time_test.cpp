// SPDX-License-Identifier: MIT
// goro::after, goro::timer and goro::ticker: delivery times, stop/reset, dropped ticks, and that no timer outlives its use.
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

std::size_t pending_timers() { return goro::runtime_metrics().pending_timers; }

// Generous upper bound for "promptly": the machine may be loaded and run
// under sanitizers. Lower bounds are exact: nothing may fire early.
constexpr auto slack = 5s;

goro::run_options with_workers(unsigned workers) {
  goro::run_options o;
  o.workers = workers;
  return o;
}

}  // namespace

TEST_CASE("after(d) delivers the time once, not before d") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    auto start = clock_type::now();
    goro::chan<goro::time_point> c = goro::after(30ms);
    CHECK(c.capacity() == 1);
    CHECK(pending_timers() == 1);
    auto t = c.recv();
    auto now = clock_type::now();
    REQUIRE(t.has_value());
    CHECK(*t >= start + 30ms);  // the value is the firing time
    CHECK(*t <= now);
    CHECK(now - start < 30ms + slack);
    CHECK(pending_timers() == 0);
    // Exactly once: nothing else arrives, and the channel is never closed.
    CHECK(goro::select(goro::on_recv(c), goro::on_timeout(60ms)) == 1);
    CHECK(c.try_recv().status == goro::chan_op::would_block);
    CHECK_FALSE(c.closed());
  });
}

TEST_CASE("after with a zero or negative duration delivers at once") {
  goro_test::run_in_goro(2, [] {
    auto start = clock_type::now();
    CHECK(goro::after(0ms).recv().has_value());
    CHECK(goro::after(-1h).recv().has_value());
    CHECK(goro::after(std::chrono::nanoseconds(1)).recv().has_value());
    CHECK(clock_type::now() - start < slack);
  });
}

TEST_CASE("a select on after() in a loop leaves no pending timers (time.After-in-a-loop)") {
  unsigned workers = GORO_WORKERS();
  const long n = goro_test::scaled(100'000, 2'000);
  goro_test::run_in_goro(workers, [&] {
    // The channels are counted while they exist...
    {
      std::vector<goro::chan<goro::time_point>> held;
      for (int i = 0; i < 100; ++i) held.push_back(goro::after(1h));
      CHECK(pending_timers() == 100);
    }
    // ...and their timers go with the last handle.
    CHECK(pending_timers() == 0);

    goro::chan<long> work{1};
    long sum = 0, timeouts = 0, seen = 0;
    for (long i = 0; i < n; ++i) {
      work.send(i);
      goro::select(goro::on_recv(work, [&](std::optional<long> v) { sum += v.value_or(0); }),
                   goro::on_recv(goro::after(1h), [&] { ++timeouts; }));
      if ((i & 255) == 0 && pending_timers() != 0) ++seen;
      if ((i & 4095) == 0) goro::yield();  // a long loop that never blocks: let the worker breathe
    }
    CHECK(sum == n * (n - 1) / 2);
    CHECK(timeouts == 0);
    CHECK(seen == 0);
    CHECK(pending_timers() == 0);

    // Dropped outright, too.
    for (long i = 0; i < n; ++i) {
      (void)goro::after(1h);
      if ((i & 4095) == 0) goro::yield();
    }
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("after() works from a plain thread while a runtime runs, and needs one") {
  CHECK_THROWS_AS(goro::after(1ms), goro::misuse_error);
  CHECK_THROWS_AS(goro::timer(1ms), goro::misuse_error);
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    std::optional<goro::time_point> got;
    goro::time_point start;
    goro::wait_group done;
    done.add(1);
    std::thread t([&] {
      start = clock_type::now();
      got = goro::after(20ms).recv();  // blocks the thread until a worker fires it
      done.done();
    });
    done.wait();
    t.join();
    REQUIRE(got.has_value());
    CHECK(*got >= start + 20ms);
  });
}

TEST_CASE("a timer fires once on its channel") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    auto start = clock_type::now();
    goro::timer t(25ms);
    auto v = t.channel().recv();
    REQUIRE(v.has_value());
    CHECK(*v >= start + 25ms);
    CHECK(clock_type::now() - start < 25ms + slack);
    CHECK(goro::select(goro::on_recv(t.channel()), goro::on_timeout(50ms)) == 1);
    CHECK(pending_timers() == 0);
    CHECK_FALSE(t.stop());  // already fired
  });
}

TEST_CASE("timer.stop() before it fires returns true, frees its slot at once, and nothing is delivered") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::timer t(100ms);
    CHECK(pending_timers() == 1);
    CHECK(t.stop());
    CHECK(pending_timers() == 0);  // at once, not when 100 ms have passed
    CHECK_FALSE(t.stop());
    CHECK(goro::select(goro::on_recv(t.channel()), goro::on_timeout(200ms)) == 1);
    CHECK(t.channel().try_recv().status == goro::chan_op::would_block);
  });
}

TEST_CASE("timer.stop() after it fired returns false and drops the unreceived time") {
  goro_test::run_in_goro(2, [] {
    goro::timer t(1ms);
    // No event to wait on: the timer fills its channel from a worker.
    REQUIRE(goro_test::eventually([&] { return t.channel().size() == 1; }));
    CHECK_FALSE(t.stop());
    CHECK(t.channel().size() == 0);  // no stale time after stop() (Go 1.23)
    CHECK(t.channel().try_recv().status == goro::chan_op::would_block);
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("timer.reset() re-arms it: only the new deadline delivers") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    SECTION("earlier") {
      goro::timer t(1h);
      auto start = clock_type::now();
      CHECK(t.reset(20ms));  // it was pending
      CHECK(pending_timers() == 1);
      auto v = t.channel().recv();
      REQUIRE(v.has_value());
      CHECK(*v >= start + 20ms);
      CHECK(clock_type::now() - start < slack);
      CHECK(pending_timers() == 0);
    }
    SECTION("later") {
      auto start = clock_type::now();
      goro::timer t(20ms);
      t.reset(150ms);  // (true unless 20 ms passed since the line above)
      // The old deadline passes without a delivery.
      CHECK(goro::select(goro::on_recv(t.channel()), goro::on_timeout(60ms)) == 1);
      auto v = t.channel().recv();
      REQUIRE(v.has_value());
      CHECK(*v >= start + 150ms);
    }
    SECTION("after firing, and the stale time is dropped") {
      goro::timer t(1ms);
      REQUIRE(goro_test::eventually([&] { return t.channel().size() == 1; }));
      auto start = clock_type::now();
      CHECK_FALSE(t.reset(20ms));  // it had fired
      auto v = t.channel().recv();
      REQUIRE(v.has_value());
      CHECK(*v >= start + 20ms);  // the new time, not the stale one
      CHECK(t.channel().try_recv().status == goro::chan_op::would_block);
    }
    SECTION("a stopped timer can be reset") {
      goro::timer t(1h);
      CHECK(t.stop());
      CHECK(pending_timers() == 0);
      CHECK_FALSE(t.reset(10ms));
      CHECK(pending_timers() == 1);
      CHECK(t.channel().recv().has_value());
    }
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("a timer that goes away before it fires frees its slot") {
  goro_test::run_in_goro(2, [] {
    {
      goro::timer t(1h);
      CHECK(pending_timers() == 1);
    }
    CHECK(pending_timers() == 0);
    // A copy of its channel keeps it alive (and pending) until the copy goes.
    goro::chan<goro::time_point> kept;
    {
      goro::timer t(1h);
      kept = t.channel();
    }
    CHECK(pending_timers() == 1);
    kept = {};
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("fibers and selects blocked on a timer's channel are woken when it fires") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    auto start = clock_type::now();
    goro::timer t(20ms);
    goro::chan<int> never{0};
    goro::chan<int> result{1};
    goro::spawn({.name = "timer-selector"}, [&] {
      result.send(goro::select(goro::on_recv(never), goro::on_recv(t.channel())));
    });
    CHECK(result.recv() == 1);
    CHECK(clock_type::now() - start >= 20ms);
    // Many fibers, one timer each, all woken.
    const int n = 50;
    std::atomic<int> woken{0};
    goro::wait_group done;
    done.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn([&, i] {
        goro::timer mine(std::chrono::milliseconds(1 + i % 10));
        if (mine.channel().recv()) woken++;
        done.done();
      });
    done.wait();
    CHECK(woken.load() == n);
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("each timer delivers no earlier than its own deadline") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    const int n = 20;
    std::vector<goro::chan<goro::time_point>> chans;
    std::vector<goro::time_point> deadlines;
    for (int i = 0; i < n; ++i) {
      auto d = std::chrono::milliseconds((i * 7) % n * 2);  // shuffled 0..38 ms
      deadlines.push_back(clock_type::now() + d);
      chans.push_back(goro::after(d));
    }
    int early = 0;
    for (int i = 0; i < n; ++i) {
      auto v = chans[static_cast<std::size_t>(i)].recv();
      if (!v || *v < deadlines[static_cast<std::size_t>(i)]) ++early;
    }
    CHECK(early == 0);
  });
}

TEST_CASE("a ticker delivers every period") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    const auto period = 10ms;
    auto start = clock_type::now();
    goro::ticker tk(period);
    CHECK(tk.channel().capacity() == 1);
    goro::time_point last = start;
    for (int k = 1; k <= 5; ++k) {
      auto v = tk.channel().recv();
      REQUIRE(v.has_value());
      CHECK(*v > last);
      CHECK(*v >= start + k * period);  // the k-th tick is due at k periods
      last = *v;
    }
    CHECK(clock_type::now() - start < 5 * period + slack);
    CHECK(pending_timers() == 1);  // still ticking
    tk.stop();
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("a ticker drops ticks for a slow receiver") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::ticker tk(5ms);
    // The slow receiver: away for about 40 periods (this sleep is the
    // behaviour under test, not a wait for something to settle).
    goro::sleep_for(200ms);
    CHECK(tk.channel().size() <= 1);
    int queued = 0;
    while (tk.channel().try_recv()) ++queued;
    // One buffered tick, perhaps one more that fired during the loop; never
    // the 40 that came due.
    CHECK(queued >= 1);
    CHECK(queued <= 2);
    // Ticking goes on.
    auto after_drain = clock_type::now();
    auto v = tk.channel().recv();
    REQUIRE(v.has_value());
    CHECK(*v >= after_drain - 5ms);
  });
}

TEST_CASE("ticker.stop() ends the ticks at once and frees its slot; reset() restarts them") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::ticker tk(5ms);
    CHECK(tk.channel().recv().has_value());
    CHECK(pending_timers() == 1);
    tk.stop();
    CHECK(pending_timers() == 0);
    CHECK(tk.channel().size() == 0);  // no tick from before stop() stays
    CHECK(goro::select(goro::on_recv(tk.channel()), goro::on_timeout(50ms)) == 1);
    tk.stop();  // idempotent
    auto start = clock_type::now();
    tk.reset(10ms);
    CHECK(pending_timers() == 1);
    for (int k = 1; k <= 3; ++k) {
      auto v = tk.channel().recv();
      REQUIRE(v.has_value());
      CHECK(*v >= start + k * 10ms);
    }
    // A bad period is refused before anything changes (Go's Reset panics
    // first, too): the ticker keeps ticking.
    CHECK_THROWS_AS(tk.reset(0ms), goro::misuse_error);
    CHECK(pending_timers() == 1);
    CHECK(tk.channel().recv().has_value());
    tk.stop();
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("a ticker stops when it goes away, and a non-positive period is a misuse") {
  goro_test::run_in_goro(2, [] {
    {
      goro::ticker tk(1ms);
      CHECK(tk.channel().recv().has_value());
    }
    CHECK(pending_timers() == 0);
    CHECK_THROWS_AS(goro::ticker(0ms), goro::misuse_error);
    CHECK_THROWS_AS(goro::ticker(-1s), goro::misuse_error);
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("timers and tickers work from plain threads") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    bool fired = false, stopped = false, stopped_silent = false;
    int ticks = 0;
    std::size_t pending_after_stop = 99;
    goro::wait_group done;
    done.add(1);
    std::thread th([&] {
      goro::timer t(10ms);
      fired = t.channel().recv().has_value();
      goro::timer u(1h);
      stopped = u.stop();
      pending_after_stop = goro::runtime_metrics().pending_timers;
      stopped_silent = goro::select(goro::on_recv(u.channel()), goro::on_timeout(20ms)) == 1;
      goro::ticker tk(2ms);
      for (int i = 0; i < 3; ++i)
        if (tk.channel().recv()) ++ticks;
      done.done();
    });
    done.wait();
    th.join();
    CHECK(fired);
    CHECK(stopped);
    CHECK(pending_after_stop == 0);
    CHECK(stopped_silent);
    CHECK(ticks == 3);
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("a timer kept past its runtime is harmless") {
  std::optional<goro::timer> kept;
  std::optional<goro::ticker> kept_ticker;
  goro::run(with_workers(2), [&] {
    kept.emplace(1h);
    kept_ticker.emplace(1h);
    CHECK(goro::runtime_metrics().pending_timers == 2);
  });
  // The runtime and its timer heaps are gone; stopping and dropping is safe.
  CHECK_FALSE(kept->stop());
  CHECK(kept->channel().try_recv().status == goro::chan_op::would_block);
  kept.reset();
  kept_ticker.reset();
}

TEST_CASE("a pending timer keeps the deadlock detector quiet") {
  unsigned workers = GORO_WORKERS();
  goro::run_options o = with_workers(workers);
  o.detect_deadlock = true;
  o.deadlock_grace = 50ms;
  auto start = clock_type::now();
  bool got = false;
  // Every fiber waits on a timer's channel for six grace periods: only the
  // timer can wake them, and it will.
  CHECK_NOTHROW(got = goro::run(o, [] {
    goro::timer t(300ms);
    goro::wait_group done;
    done.add(1);
    goro::spawn([&] {
      (void)goro::after(300ms).recv();
      done.done();
    });
    bool v = t.channel().recv().has_value();
    done.wait();
    goro::testing::expect_no_leaked_fibers();
    return v;
  }));
  CHECK(got);
  CHECK(clock_type::now() - start >= 300ms);
}

// Regression test for a fixed bug. It was: a duration too long for
// steady_clock is not clamped. on_timeout(), timer, after() and sleep_for()
// compute `steady_clock::now() + d`, which overflows (undefined behaviour;
// in practice a deadline in the past) for nanoseconds::max(), and
// hours::max() already overflows converting to nanoseconds. The result is a
// timeout that expires at once instead of never. Go clamps such deadlines
// (runtime.when()), so time.After(math.MaxInt64) never fires.
TEST_CASE("a timeout too long to represent means never, not now") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> c{0};
    goro::chan<int> result{1};
    goro::spawn({.name = "forever-timeout"},
                [&] { result.send(goro::select(goro::on_recv(c), goro::on_timeout(std::chrono::nanoseconds::max()))); });
    // Parked: unless the timeout expired at once, in which case the result is there.
    bool parked = goro_test::eventually([&] {
      if (result.size() == 1) return true;
      for (const auto& f : goro::list_fibers())
        if (f.name == "forever-timeout" && f.state == goro::fiber_state::waiting) return true;
      return false;
    });
    CHECK(parked);
    if (result.size() == 0) c.send(1);
    CHECK(result.recv() == 0);

    goro::timer t(std::chrono::nanoseconds::max());
    auto a = goro::after(std::chrono::nanoseconds::max());
    CHECK(goro::select(goro::on_recv(t.channel()), goro::on_recv(a), goro::on_timeout(50ms)) == 2);
    CHECK(t.stop());
  });
}
