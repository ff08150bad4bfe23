// SPDX-License-Identifier: MIT
// goro::mutex: mutual exclusion under contention, try_lock, std lock wrappers, threads and fibers, wait reason.
#include "goro_test.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <sstream>
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

std::optional<goro::fiber_info> find_fiber(const std::string& name) {
  for (auto& info : goro::list_fibers())
    if (info.name == name) return info;
  return std::nullopt;
}

// Detects two holders at once: enter() on taking the lock, leave() before
// releasing it.
struct exclusion_check {
  std::atomic<int> inside{0};
  std::atomic<long> overlaps{0};
  void enter() {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
  }
  void leave() { inside.fetch_sub(1); }
};

}  // namespace

TEST_CASE("a counter under the mutex is exact under contention") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 32;
  const long increments = goro_test::scaled(2000, 100);
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    long counter = 0;  // plain: only touched under m
    exclusion_check excl;
    std::atomic<long> contended{0};
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f)
      goro::spawn([&] {
        for (long i = 0; i < increments; ++i) {
          if (m.try_lock()) {
            m.unlock();
          } else {
            contended.fetch_add(1, std::memory_order_relaxed);
          }
          m.lock();
          excl.enter();
          long seen = counter;
          // Yield inside some critical sections: the others then find the
          // mutex held and park, even on one worker.
          if (i % 16 == 0) goro::yield();
          counter = seen + 1;
          excl.leave();
          m.unlock();
        }
        wg.done();
      });
    wg.wait();
    CHECK(counter == fibers * increments);
    CHECK(excl.overlaps.load() == 0);
    CHECK(contended.load() > 0);  // the test did exercise the slow path
  });
}

TEST_CASE("try_lock takes a free mutex and fails on a held one without blocking") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    REQUIRE(m.try_lock());
    CHECK_FALSE(m.try_lock());  // not recursive: held, even by the caller

    // Another fiber and a plain thread both fail while it is held (and do
    // not block: on one worker a blocked fiber would never return here)...
    goro::wait_group wg;
    std::atomic<int> fiber_result{-1};
    auto try_in_fiber = [&] {
      wg.add(1);
      goro::spawn([&] {
        bool got = m.try_lock();
        fiber_result = got ? 1 : 0;
        if (got) m.unlock();
        wg.done();
      });
      wg.wait();
      return fiber_result.load();
    };
    auto try_in_thread = [&] {
      int result = -1;
      std::thread([&] {
        bool got = m.try_lock();
        result = got ? 1 : 0;
        if (got) m.unlock();
      }).join();
      return result;
    };
    CHECK(try_in_fiber() == 0);
    CHECK(try_in_thread() == 0);

    // ...and succeed once it is released.
    m.unlock();
    CHECK(try_in_fiber() == 1);
    CHECK(try_in_thread() == 1);
    CHECK(m.try_lock());
    m.unlock();
  });
}

TEST_CASE("std::scoped_lock over two goro mutexes taken in opposite orders does not deadlock") {
  unsigned workers = GORO_WORKERS();
  const long iterations = goro_test::scaled(500, 50);
  const int fibers = 8;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex a, b;
    long both = 0;  // under a and b
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f)
      goro::spawn([&, f] {
        for (long i = 0; i < iterations; ++i) {
          auto bump = [&] {
            long v = both;
            if (i % 8 == 0) goro::yield();
            both = v + 1;
          };
          if (f % 2 == 0) {
            std::scoped_lock lock(a, b);
            bump();
          } else {
            std::scoped_lock lock(b, a);
            bump();
          }
        }
        wg.done();
      });
    wg.wait();
    CHECK(both == fibers * iterations);
    // Nothing is left held.
    CHECK(a.try_lock());
    CHECK(b.try_lock());
    a.unlock();
    b.unlock();
  });
}

TEST_CASE("std::lock_guard and std::unique_lock work with goro::mutex") {
  unsigned workers = GORO_WORKERS();
  const long iterations = goro_test::scaled(500, 50);
  const int fibers = 8;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    long count = 0;  // under m
    std::atomic<long> deferred_owned{0};
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f)
      goro::spawn([&] {
        for (long i = 0; i < iterations; ++i) {
          {
            std::lock_guard guard(m);
            long v = count;
            if (i % 8 == 0) goro::yield();
            count = v + 1;
          }
          {
            std::unique_lock lock(m, std::defer_lock);
            if (lock.owns_lock()) deferred_owned.fetch_add(1);
            lock.lock();
            ++count;
            lock.unlock();  // released and re-taken around a switch
            goro::yield();
            lock.lock();
            ++count;
          }
          {
            std::unique_lock lock(m, std::try_to_lock);
            if (!lock.owns_lock()) lock.lock();
            ++count;
          }
        }
        wg.done();
      });
    wg.wait();
    CHECK(count == fibers * iterations * 4);
    CHECK(deferred_owned.load() == 0);
    CHECK(m.try_lock());  // nothing is left held
    m.unlock();
  });
}

TEST_CASE("plain threads and fibers contend on one mutex with an exact count") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 16, threads = 2;
  const long increments = goro_test::scaled(2000, 100);
  run_mixed(workers, [&] {
    goro::mutex m;
    long counter = 0;
    exclusion_check excl;
    goro::wait_group wg;
    wg.add(fibers + threads);
    auto body = [&](bool is_fiber) {
      for (long i = 0; i < increments; ++i) {
        std::lock_guard lock(m);
        excl.enter();
        long v = counter;
        if (i % 16 == 0) {
          if (is_fiber)
            goro::yield();
          else
            std::this_thread::yield();
        }
        counter = v + 1;
        excl.leave();
      }
      wg.done();
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(body, false);
    for (int f = 0; f < fibers; ++f) goro::spawn([&] { body(true); });
    wg.wait();
    for (auto& t : pool) t.join();
    CHECK(counter == (fibers + threads) * increments);
    CHECK(excl.overlaps.load() == 0);
  });
}

TEST_CASE("a plain thread blocked in lock is woken by a fiber's unlock") {
  unsigned workers = GORO_WORKERS();
  run_mixed(workers, [&] {
    goro::mutex m;
    goro::wait_group thread_done;
    std::atomic<bool> thread_trying{false}, thread_got_it{false};
    m.lock();
    thread_done.add(1);
    std::thread t([&] {
      thread_trying = true;
      m.lock();
      thread_got_it = true;
      m.unlock();
      thread_done.done();
    });
    REQUIRE(goro_test::eventually([&] { return thread_trying.load(); }));
    CHECK_FALSE(thread_got_it.load());  // m is still held by this fiber
    m.unlock();
    REQUIRE(join_within(thread_done));
    t.join();
    CHECK(thread_got_it.load());
  });
}

TEST_CASE("a fiber blocked in lock shows the wait reason sync.Mutex.Lock") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::wait_group wg;
    std::atomic<bool> got_it{false};
    m.lock();
    wg.add(1);
    goro::spawn({.name = "blocked-locker"}, [&] {
      m.lock();
      got_it = true;
      m.unlock();
      wg.done();
    });
    std::optional<goro::fiber_info> seen;
    REQUIRE(goro_test::eventually([&] {
      seen = find_fiber("blocked-locker");
      return seen && seen->state == goro::fiber_state::waiting;
    }));
    CHECK(seen->reason == goro::wait_reason::mutex_lock);
    CHECK(goro::to_string(seen->reason) == "sync.Mutex.Lock");
    std::ostringstream dump;
    goro::dump_fibers(dump);
    CHECK(dump.str().find("sync.Mutex.Lock") != std::string::npos);
    CHECK_FALSE(got_it.load());

    m.unlock();
    REQUIRE(join_within(wg));
    CHECK(got_it.load());
    CHECK_FALSE(find_fiber("blocked-locker").has_value());
  });
}

TEST_CASE("unlock wakes every parked waiter in turn") {
  // All waiters park behind one holder; each unlock must pass the mutex on,
  // or the remaining waiters never wake.
  unsigned workers = GORO_WORKERS();
  const int waiters = 50;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::wait_group wg;
    long order = 0;
    std::atomic<int> acquired{0};
    m.lock();
    wg.add(waiters);
    for (int i = 0; i < waiters; ++i)
      goro::spawn({.name = "queued-locker"}, [&] {
        m.lock();
        ++order;
        acquired.fetch_add(1);
        goro::yield();  // hold it across a switch, so the others stay parked
        m.unlock();
        wg.done();
      });
    REQUIRE(goro_test::eventually([&] {
      auto all = goro::list_fibers();
      return std::count_if(all.begin(), all.end(), [](const goro::fiber_info& f) {
               return f.name == "queued-locker" && f.state == goro::fiber_state::waiting &&
                      f.reason == goro::wait_reason::mutex_lock;
             }) == waiters;
    }));
    CHECK(acquired.load() == 0);
    m.unlock();
    REQUIRE(join_within(wg));
    CHECK(acquired.load() == waiters);
    CHECK(order == waiters);
  });
}
