// SPDX-License-Identifier: MIT
// goro::this_fiber: yield, sleep_for/sleep_until (fibers and plain threads), shutdown of sleepers, id() and name().
// Sleeps in this file are the behaviour under test (duration, ordering,
// plain-thread sleeps, shutdown of sleepers); none waits for other work to
// settle.
#include "goro_test.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
using clock_type = std::chrono::steady_clock;

// Parks the calling fiber on an empty channel until a fiber spawned for it
// sends: a park and a wake-up from whichever worker runs the sender, with
// no clock involved.
void park_until_sent() {
  goro::chan<int> handoff(0);  // unbuffered (a default chan is nil)
  goro::spawn([handoff] { handoff.send(1); });
  (void)handoff.recv();
}
}  // namespace

TEST_CASE("yield interleaves two fibers on one worker") {
  // Only one worker can promise strict alternation: yield() puts the caller
  // behind every other runnable fiber of its worker.
  const int rounds = 100;
  goro_test::run_in_goro(1, [&] {
    std::vector<char> trace;  // one worker: no two fibers touch it at once
    goro::wait_group gate, wg;
    gate.add(1);
    wg.add(2);
    for (char who : {'a', 'b'})
      goro::spawn([&, who] {
        gate.wait();  // both runnable before either starts
        for (int i = 0; i < rounds; ++i) {
          trace.push_back(who);
          goro::yield();
        }
        wg.done();
      });
    gate.done();
    wg.wait();
    REQUIRE(trace.size() == 2u * rounds);
    CHECK(std::count(trace.begin(), trace.end(), 'a') == rounds);
    std::size_t repeats = 0;
    for (std::size_t i = 1; i < trace.size(); ++i)
      if (trace[i] == trace[i - 1]) ++repeats;
    CHECK(repeats == 0);
  });
}

TEST_CASE("a fiber spinning on yield lets the fiber it waits for run") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    std::atomic<bool> flag{false};
    std::atomic<long> spins{0};
    goro::wait_group wg;
    wg.add(2);
    goro::spawn([&] {
      while (!flag.load()) {
        spins.fetch_add(1, std::memory_order_relaxed);
        goro::yield();
      }
      wg.done();
    });
    goro::spawn([&] {
      for (int i = 0; i < 10; ++i) goro::yield();
      flag = true;
      wg.done();
    });
    // The main fiber spins on yield too: with one worker it is the others'
    // only chance to run.
    while (!flag.load()) goro::yield();
    wg.wait();
    CHECK(flag.load());
  });
  // On a plain thread yield() is the thread's yield, and returns.
  goro::yield();
  goro::this_fiber::yield();
}

TEST_CASE("sleep_for sleeps at least the duration") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    for (auto d : {1ms, 20ms, 50ms}) {
      auto start = clock_type::now();
      goro::sleep_for(d);  // the behaviour under test
      auto took = clock_type::now() - start;
      CHECK(took >= d);
      CHECK(took < d + 5s);
    }
    // Other duration types.
    auto start = clock_type::now();
    goro::sleep_for(std::chrono::duration<double, std::milli>(2.5));  // the behaviour under test
    CHECK(clock_type::now() - start >= 2500us);
    // Zero and negative durations only yield.
    start = clock_type::now();
    goro::sleep_for(0ms);  // the behaviour under test: returns at once
    goro::sleep_for(-1h);  // the behaviour under test: returns at once
    CHECK(clock_type::now() - start < 5s);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

TEST_CASE("sleepers wake in the order of their deadlines") {
  unsigned workers = GORO_WORKERS();
  const std::vector<int> order_spawned{5, 1, 3, 2, 4};
  // Deadlines `unit` apart. A heavily loaded machine can wake a worker later
  // than one unit, so a misordered round is retried with a wider unit; a
  // scheduler that ignores deadlines misorders every round.
  std::vector<int> woke;
  for (auto unit : {10ms, 40ms, 150ms}) {
    woke = goro_test::run_in_goro(workers, [&] {
      std::vector<int> order;
      goro::mutex m;
      goro::wait_group wg;
      wg.add(static_cast<std::int64_t>(order_spawned.size()));
      for (int k : order_spawned)
        goro::spawn([&, k] {
          goro::sleep_for(k * unit);  // the behaviour under test
          {
            std::lock_guard lock(m);
            order.push_back(k);
          }
          wg.done();
        });
      wg.wait();
      return order;
    });
    if (std::is_sorted(woke.begin(), woke.end())) break;
    WARN("sleepers woke out of order with " << unit.count() << " ms apart; retrying wider");
  }
  CHECK(woke == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("sleep_until a time in the past returns promptly") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    auto start = clock_type::now();
    goro::sleep_until(clock_type::now() - 1h);     // the behaviour under test: returns at once
    goro::sleep_until(clock_type::now());          // the behaviour under test: returns at once
    goro::sleep_until(clock_type::time_point{});  // the behaviour under test: the clock's epoch, returns at once
    CHECK(clock_type::now() - start < 5s);
    CHECK(goro::runtime_metrics().pending_timers == 0);
    // And a future one is honoured.
    auto until = clock_type::now() + 15ms;
    goro::sleep_until(until);  // the behaviour under test
    CHECK(clock_type::now() >= until);
  });
}

TEST_CASE("ten thousand sleeping fibers all wake and leave no timer") {
  unsigned workers = GORO_WORKERS();
  const long n = goro_test::scaled(10'000, 500);
  goro_test::run_in_goro(workers, [&] {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> ms(1, 50);
    std::atomic<long> woke{0}, early{0};
    goro::wait_group wg;
    wg.add(n);
    auto start = clock_type::now();
    for (long i = 0; i < n; ++i) {
      auto d = std::chrono::milliseconds(ms(rng));
      goro::spawn([&, d] {
        auto t0 = clock_type::now();
        goro::sleep_for(d);  // the behaviour under test
        if (clock_type::now() - t0 < d) early.fetch_add(1);
        woke.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
    auto took = clock_type::now() - start;
    CHECK(woke.load() == n);
    CHECK(early.load() == 0);
    // The sleeps overlap: a worker blocked by one sleeper would take minutes.
    CHECK(took < 10s);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

namespace {
// Fills a fresh frame (likely where a finished sleep's timer node was) with a
// pattern, lets other fibers and workers run, and counts bytes that changed:
// nothing but this fiber may write its stack.
[[gnu::noinline]] long scribble_and_check() {
  volatile unsigned char buf[512];
  for (auto& b : buf) b = 0xAB;
  goro::yield();
  long changed = 0;
  for (auto& b : buf) changed += b != 0xAB;
  return changed;
}
}  // namespace

// Regression test for a fixed bug. It was:
// after the switch, add_timer_on_current_worker() adds the sleeper's timer to
// the heap and then reads t->when again for timer_added(). A deadline that is
// already due can fire on another worker in between (a thief runs the victim's
// timers); the sleeper resumes there, returns from sleep_for() and reuses the
// frame that held the timer node, so the worker reads a dead frame.
TEST_CASE("tiny sleeps across workers wake every sleeper and leave its stack alone") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 64;
  const long loops = goro_test::scaled(500, 50);
  goro_test::run_in_goro(workers, [&] {
    std::atomic<long> woke{0}, changed{0};
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f)
      goro::spawn([&] {
        for (long i = 0; i < loops; ++i) {
          goro::sleep_for(std::chrono::microseconds(1 + i % 5));  // the behaviour under test
          woke.fetch_add(1, std::memory_order_relaxed);
          changed.fetch_add(scribble_and_check(), std::memory_order_relaxed);
        }
        wg.done();
      });
    wg.wait();
    CHECK(woke.load() == fibers * loops);
    CHECK(changed.load() == 0);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

TEST_CASE("sleep and yield work on a plain thread") {
  auto start = clock_type::now();
  goro::sleep_for(20ms);  // the behaviour under test
  CHECK(clock_type::now() - start >= 20ms);
  auto until = clock_type::now() + 10ms;
  goro::this_fiber::sleep_until(until);  // the behaviour under test
  CHECK(clock_type::now() >= until);
  goro::sleep_until(clock_type::now() - 1h);  // the behaviour under test: past, returns at once
  goro::sleep_for(0ms);                       // the behaviour under test: returns at once
  goro::yield();
  CHECK(clock_type::now() - start < 5s);
  CHECK_FALSE(goro::this_fiber::in_fiber());

  // A plain thread beside a running runtime sleeps as a thread too.
  goro_test::run_in_goro(2, [&] {
    clock_type::duration thread_took{};
    std::thread t([&] {
      auto t0 = clock_type::now();
      goro::sleep_for(15ms);  // the behaviour under test
      thread_took = clock_type::now() - t0;
    });
    t.join();  // blocks this worker briefly; the thread needs no fiber
    CHECK(thread_took >= 15ms);
    CHECK(goro::runtime_metrics().pending_timers == 0);  // no runtime timer was used
  });
}

TEST_CASE("run returns promptly while fibers sleep for an hour and unwinds them") {
  unsigned workers = GORO_WORKERS();
  const int sleepers = 10;
  std::atomic<int> destroyed{0};
  struct guard {
    std::atomic<int>* counter;
    ~guard() { counter->fetch_add(1); }
  };
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  goro::run_options options;
  options.workers = workers;
  auto start = clock_type::now();
  goro::run(options, [&] {
    for (int i = 0; i < sleepers; ++i)
      goro::spawn({.name = "hour-sleeper"}, [&] {
        guard g{&destroyed};
        goro::sleep_for(1h);  // the behaviour under test
      });
    // Return only once every sleeper is really asleep (its guard exists).
    REQUIRE(goro_test::eventually([&] {
      auto all = goro::list_fibers();
      return std::count_if(all.begin(), all.end(), [](const goro::fiber_info& f) {
               return f.name == "hour-sleeper" && f.state == goro::fiber_state::waiting &&
                      f.reason == goro::wait_reason::sleep;
             }) == sleepers;
    }));
    CHECK(destroyed.load() == 0);
  });
  auto took = clock_type::now() - start;
  const auto unwound = goro::runtime_metrics().unwound_at_shutdown - unwound_before;
  goro::testing::acknowledge_unwound(unwound);  // leaked on purpose
  CHECK(took < 5s);
  CHECK(destroyed.load() == sleepers);  // their destructors ran
  CHECK(unwound == static_cast<std::uint64_t>(sleepers));
  CHECK(goro::live_fibers() == 0);
}

TEST_CASE("id is unique per fiber and stable across blocking calls") {
  unsigned workers = GORO_WORKERS();
  const int n = 200;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    std::vector<std::uint64_t> ids;  // under m
    std::atomic<int> changed{0}, unlisted{0};
    goro::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "id-" + std::to_string(i)}, [&, i] {
        std::uint64_t id = goro::this_fiber::id();
        goro::yield();  // may resume on another worker
        park_until_sent();  // parks, and may resume elsewhere again
        if (goro::this_fiber::id() != id) changed.fetch_add(1);
        // The registry knows the fiber under the same id.
        bool listed = false;
        for (auto& info : goro::list_fibers())
          if (info.id == id && info.name == "id-" + std::to_string(i)) listed = true;
        if (!listed) unlisted.fetch_add(1);
        {
          std::lock_guard lock(m);
          ids.push_back(id);
        }
        wg.done();
      });
    wg.wait();
    const std::uint64_t main_id = goro::this_fiber::id();
    CHECK(main_id != 0);
    CHECK(changed.load() == 0);
    CHECK(unlisted.load() == 0);
    REQUIRE(ids.size() == static_cast<std::size_t>(n));
    std::set<std::uint64_t> unique(ids.begin(), ids.end());
    CHECK(unique.size() == ids.size());
    CHECK(unique.count(0) == 0);
    CHECK(unique.count(main_id) == 0);
  });
  CHECK(goro::this_fiber::id() == 0);  // a plain thread
}

TEST_CASE("ids are never reused by later fibers or runs") {
  unsigned workers = GORO_WORKERS();
  std::set<std::uint64_t> seen;
  for (int run = 0; run < 3; ++run) {
    auto ids = goro_test::run_in_goro(workers, [] {
      std::vector<std::uint64_t> out;
      goro::mutex m;
      goro::wait_group wg;
      wg.add(50);
      for (int i = 0; i < 50; ++i)
        goro::spawn([&] {
          std::lock_guard lock(m);
          out.push_back(goro::this_fiber::id());
          wg.done();
        });
      wg.wait();
      out.push_back(goro::this_fiber::id());
      return out;
    });
    for (auto id : ids) CHECK(seen.insert(id).second);
  }
}

TEST_CASE("name is the spawn_options name") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    std::string named_before, named_after, unnamed;
    goro::wait_group wg;
    wg.add(2);
    goro::spawn({.name = "alpha-reader"}, [&] {
      named_before = goro::this_fiber::name();
      park_until_sent();  // it may resume on another worker; the name must survive that
      named_after = goro::this_fiber::name();
      wg.done();
    });
    goro::spawn([&] {
      unnamed = goro::this_fiber::name();
      wg.done();
    });
    wg.wait();
    CHECK(named_before == "alpha-reader");
    CHECK(named_after == "alpha-reader");
    CHECK(unnamed.empty());
    CHECK(goro::this_fiber::name() == "main");  // run_options::main_name's default
    CHECK(goro::this_fiber::in_fiber());
  });
  CHECK(goro::this_fiber::name().empty());  // a plain thread
}
