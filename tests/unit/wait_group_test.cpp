// SPDX-License-Identifier: MIT
// goro::wait_group: add/done/wait across fibers and plain threads, misuse, reuse, memory ordering.
#include "goro_test.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Like goro_test::run_in_goro, for tests where plain threads wake fibers: the
// deadlock detector must not mistake a plain thread that the OS left
// unscheduled for 250 ms (a loaded machine, a sanitizer) for a deadlock.
template <class Fn>
void run_mixed(unsigned workers, Fn&& fn) {
  goro::run_options options;
  options.workers = workers;
  options.deadlock_grace = 10s;
  goro::run(options, [&] {
    fn();
    goro::testing::expect_no_leaked_fibers();
  });
}

// Joins with a deadline: a lost wake-up fails the test within seconds, with
// the fibers still parked (then unwound and reported), instead of hanging it.
// (goro's deadlock detector would turn the hang into a deadlock_error, but
// these tests do not depend on it.)
bool join_within(goro::wait_group& wg, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  if (!goro_test::eventually([&] { return wg.count() == 0; }, limit)) return false;
  wg.wait();
  return true;
}

// Fibers of this runtime parked with `reason` (snapshot).
std::size_t parked_with(goro::wait_reason reason) {
  auto all = goro::list_fibers();
  return static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [&](const goro::fiber_info& f) {
    return f.state == goro::fiber_state::waiting && f.reason == reason;
  }));
}

}  // namespace

TEST_CASE("wait returns once every fiber called done") {
  unsigned workers = GORO_WORKERS();
  const int n = 200;
  goro_test::run_in_goro(workers, [&] {
    goro::wait_group wg;
    std::atomic<int> finished{0};
    wg.add(n);
    CHECK(wg.count() == n);
    for (int i = 0; i < n; ++i)
      goro::spawn([&, i] {
        // Some fibers block first, so the count drops in no particular order.
        if (i % 3 == 0) goro::yield();
        if (i % 7 == 0) goro::sleep_for(1ms);
        finished.fetch_add(1);
        wg.done();
      });
    wg.wait();
    CHECK(finished.load() == n);
    CHECK(wg.count() == 0);
  });
}

TEST_CASE("wait returns at once when the count is zero") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::wait_group fresh;
    fresh.wait();  // never added to

    goro::wait_group wg;
    wg.add(3);
    wg.done();
    wg.add(-2);  // add() with a negative count is done() in bulk
    CHECK(wg.count() == 0);
    wg.wait();
    wg.wait();  // and again: zero stays zero

    if (workers == 1) {
      // wait() at zero does not even yield: a fiber spawned just before it
      // (runnable on this, the only worker) has not run when it returns.
      std::atomic<bool> ran{false};
      goro::wait_group other;
      other.add(1);
      goro::spawn([&] {
        ran = true;
        other.done();
      });
      wg.wait();
      CHECK_FALSE(ran.load());
      other.wait();
      CHECK(ran.load());
    }
  });
  // Outside any runtime, on a plain thread.
  goro::wait_group wg;
  wg.wait();
  wg.add(1);
  wg.done();
  wg.wait();
  CHECK(wg.count() == 0);
}

TEST_CASE("many waiters are all released by the last done") {
  unsigned workers = GORO_WORKERS();
  const int waiters = 64;
  goro_test::run_in_goro(workers, [&] {
    goro::wait_group gate, finished;
    std::atomic<int> released{0};
    gate.add(1);
    finished.add(waiters);
    for (int i = 0; i < waiters; ++i)
      goro::spawn({.name = "gate-waiter"}, [&] {
        gate.wait();
        released.fetch_add(1);
        finished.done();
      });
    // Every waiter parked on the gate, none got through.
    REQUIRE(goro_test::eventually([&] { return parked_with(goro::wait_reason::wait_group) == waiters; }));
    CHECK(released.load() == 0);
    gate.done();  // one done() releases all of them
    REQUIRE(join_within(finished));
    CHECK(released.load() == waiters);
  });
}

TEST_CASE("a plain thread waits on a wait_group that fibers release") {
  unsigned workers = GORO_WORKERS();
  const int n = 50;
  run_mixed(workers, [&] {
    goro::wait_group wg, thread_done;
    std::vector<long> results(n, 0);  // plain: written by fibers, read by the thread after wait()
    std::atomic<bool> thread_saw_all{false};
    wg.add(n);
    thread_done.add(1);
    std::thread waiter([&] {
      wg.wait();
      bool all = true;
      for (int i = 0; i < n; ++i) all = all && results[static_cast<std::size_t>(i)] == i + 1;
      thread_saw_all = all;
      thread_done.done();
    });
    for (int i = 0; i < n; ++i)
      goro::spawn([&, i] {
        if (i % 2 == 0) goro::yield();
        results[static_cast<std::size_t>(i)] = i + 1;
        wg.done();
      });
    REQUIRE(join_within(thread_done));  // joining before that would block the worker
    waiter.join();
    CHECK(thread_saw_all.load());
  });
}

TEST_CASE("fibers wait on a wait_group that plain threads release") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 20, threads = 2, per_thread = 100;
  run_mixed(workers, [&] {
    goro::wait_group wg, fibers_done;
    std::vector<long> written(threads * per_thread, 0);  // plain: written by the threads
    std::atomic<int> saw_all{0};
    wg.add(threads * per_thread);
    fibers_done.add(fibers);
    for (int i = 0; i < fibers; ++i)
      goro::spawn({.name = "thread-released"}, [&] {
        wg.wait();
        bool all = std::all_of(written.begin(), written.end(), [](long v) { return v == 7; });
        if (all) saw_all.fetch_add(1);
        fibers_done.done();
      });
    // Start the threads only once every fiber has parked, so each of them is
    // woken by a plain thread rather than passing straight through.
    REQUIRE(goro_test::eventually([&] { return parked_with(goro::wait_reason::wait_group) == fibers; }));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          written[static_cast<std::size_t>(t * per_thread + i)] = 7;
          wg.done();
        }
      });
    REQUIRE(join_within(fibers_done));
    for (auto& t : pool) t.join();
    CHECK(saw_all.load() == fibers);
    CHECK(wg.count() == 0);
  });
}

TEST_CASE("done more than add throws misuse_error naming the fiber") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::wait_group wg, finished;
    std::string message;
    bool threw = false;
    std::int64_t count_after = -1;
    bool usable_after = false;
    finished.add(1);
    goro::spawn({.name = "over-doner"}, [&] {
      wg.add(1);
      wg.done();
      try {
        wg.done();
      } catch (const goro::misuse_error& e) {
        threw = true;
        message = e.what();
      }
      count_after = wg.count();
      // The failed done() left the count as it was: the group still works.
      wg.add(1);
      goro::spawn([&] { wg.done(); });
      wg.wait();
      usable_after = wg.count() == 0;
      finished.done();
    });
    finished.wait();
    CHECK(threw);
    CHECK(message.find("over-doner") != std::string::npos);
    CHECK(message.find("negative") != std::string::npos);
    CHECK(count_after == 0);
    CHECK(usable_after);

    // A bulk add() that would go negative throws and changes nothing.
    goro::wait_group two;
    two.add(2);
    CHECK_THROWS_AS(two.add(-3), goro::misuse_error);
    CHECK(two.count() == 2);
    two.add(-2);
    two.wait();
  });
  // From a plain thread it throws too (and names no fiber).
  goro::wait_group wg;
  CHECK_THROWS_AS(wg.done(), goro::misuse_error);
  CHECK(wg.count() == 0);
}

TEST_CASE("a wait_group is reused across rounds") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(200, 20);
  const int per_round = 8, waiters = 3;
  goro_test::run_in_goro(workers, [&] {
    goro::wait_group wg;
    goro::wait_group waiters_back;  // every wait() of a round returned (reused too)
    std::atomic<long> work{0};
    std::atomic<long> early_returns{0};  // a waiter that returned before its round's work was done
    long main_early = 0;
    for (long r = 0; r < rounds; ++r) {
      const long target = (r + 1) * per_round;
      wg.add(per_round);
      waiters_back.add(waiters);
      for (int w = 0; w < waiters; ++w)
        goro::spawn([&] {
          wg.wait();
          if (work.load() < target) early_returns.fetch_add(1);
          waiters_back.done();
        });
      for (int i = 0; i < per_round; ++i)
        goro::spawn([&, i] {
          if (i % 2 == 1) goro::yield();
          work.fetch_add(1);
          wg.done();
        });
      wg.wait();
      if (work.load() != target) ++main_early;
      waiters_back.wait();  // only now may the next round add()
    }
    CHECK(main_early == 0);
    CHECK(early_returns.load() == 0);
    CHECK(work.load() == rounds * per_round);
  });
}

TEST_CASE("writes before done are visible after wait") {
  // Non-atomic writes on many fibers (and workers), read by the waiter with
  // no other synchronisation: wrong ordering shows as stale values here and
  // as a data race under TSan.
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(100, 10);
  const int n = 32;
  struct slot {
    long a = 0;
    long b = 0;
    std::string text;
  };
  goro_test::run_in_goro(workers, [&] {
    long bad = 0;
    goro::wait_group wg;  // reused: destroying one right after wait() is the next test's subject
    for (long r = 0; r < rounds; ++r) {
      std::vector<slot> slots(n);
      wg.add(n);
      for (int i = 0; i < n; ++i)
        goro::spawn([&, i] {
          slot& s = slots[static_cast<std::size_t>(i)];
          s.a = r * 1000 + i;
          if (i % 4 == 0) goro::yield();  // possibly resumed on another worker
          s.text = std::to_string(s.a);
          s.b = -s.a;
          wg.done();
        });
      wg.wait();
      for (int i = 0; i < n; ++i) {
        const slot& s = slots[static_cast<std::size_t>(i)];
        if (s.a != r * 1000 + i || s.b != -s.a || s.text != std::to_string(s.a)) ++bad;
      }
    }
    CHECK(bad == 0);
  });
}

// Regression test for a fixed bug. It was:
// wait_group::add() brings the count to zero with fetch_add and only then
// calls wake_all(), which takes lock_ and reads waiters_. A wait() that sees
// the zero (fast path, or under lock_ before wake_all() gets there) returns,
// and its owner may destroy the wait_group (the usage in wait_group.hpp's own
// example), so wake_all() then locks and reads freed memory; its spinlock
// exchange writes into it. TSan reports "data race ... wait_group::wake_all"
// against the destructor / the reuse of that memory.
TEST_CASE("a wait_group may be destroyed as soon as wait returns") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(2000, 200);
  goro_test::run_in_goro(workers, [&] {
    long mismatches = 0;
    for (long r = 0; r < rounds; ++r) {
      auto wg = std::make_unique<goro::wait_group>();
      std::atomic<bool> worked{false};
      wg->add(1);
      goro::spawn([p = wg.get(), &worked] {
        worked = true;
        p->done();  // the last touch of *p that the caller is allowed to assume
      });
      wg->wait();
      if (!worked.load()) ++mismatches;
      wg.reset();  // every wait() has returned: the group may go
    }
    CHECK(mismatches == 0);
  });
}
