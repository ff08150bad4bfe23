// SPDX-License-Identifier: MIT
// goro::shared_mutex: readers together, writers alone (exact counts), writer preference, std::shared_lock/unique_lock, threads and fibers, misuse.
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using goro_test::parked;
using goro_test::until_parked;

void raise_to(std::atomic<int>& maximum, int v) {
  int m = maximum.load();
  while (v > m && !maximum.compare_exchange_weak(m, v)) {
  }
}

}  // namespace

TEST_CASE("many readers hold the shared lock at the same time") {
  unsigned workers = GORO_WORKERS();
  const int readers = 16;
  goro_test::run_in_goro(workers, [&] {
    goro::shared_mutex mu;
    std::atomic<int> inside{0}, max_inside{0};
    std::atomic<int> arrived{0};
    goro::chan<int> all_in{0};
    goro::wait_group wg;
    wg.add(readers);
    for (int i = 0; i < readers; ++i)
      goro::spawn([&, all_in] {
        std::shared_lock lock(mu);
        raise_to(max_inside, inside.fetch_add(1) + 1);
        // A barrier inside the read lock: only passable if every reader
        // holds it at once (otherwise the deadlock detector ends the run).
        if (arrived.fetch_add(1) + 1 == readers) all_in.close();
        all_in.recv();
        inside.fetch_sub(1);
        wg.done();
      });
    wg.wait();
    CHECK(max_inside.load() == readers);
    CHECK(mu.try_lock());  // all gone: a writer gets it
    mu.unlock();
  });
}

TEST_CASE("a writer excludes readers and other writers: exact counts under contention") {
  unsigned workers = GORO_WORKERS();
  const int writers = 8, readers = 8, threads = 2;
  const long per_writer = goro_test::scaled(2000, 200);
  goro_test::run_in_goro(workers, [&] {
    goro::shared_mutex mu;
    long a = 0, b = 0;  // under mu: always equal outside a write
    std::atomic<int> writers_inside{0}, readers_inside{0};
    std::atomic<long> overlaps{0}, torn{0}, reads{0};
    std::atomic<bool> writing_done{false};
    auto write_once = [&](bool in_fiber, long i) {
      std::unique_lock lock(mu);
      if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0) overlaps.fetch_add(1);
      long v = a;
      if (in_fiber && i % 8 == 0) goro::yield();  // a switch inside the write
      a = v + 1;
      b = b + 1;
      writers_inside.fetch_sub(1);
    };
    auto read_once = [&](bool in_fiber) {
      std::shared_lock lock(mu);
      readers_inside.fetch_add(1);
      if (writers_inside.load() != 0) overlaps.fetch_add(1);
      long x = a;
      if (in_fiber) goro::yield();
      if (b != x || a != x) torn.fetch_add(1);
      readers_inside.fetch_sub(1);
      reads.fetch_add(1);
    };
    goro::wait_group wg;
    wg.add(writers + readers);
    for (int w = 0; w < writers; ++w)
      goro::spawn([&] {
        for (long i = 0; i < per_writer; ++i) write_once(true, i);
        wg.done();
      });
    for (int r = 0; r < readers; ++r)
      goro::spawn([&] {
        while (!writing_done.load()) read_once(true);
        wg.done();
      });
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (long i = 0; i < per_writer / 4; ++i) {
          if (t == 0)
            write_once(false, i);
          else
            read_once(false);
        }
      });
    for (auto& t : ts) t.join();
    // Writers are done when the count says so; then let the readers stop.
    REQUIRE(goro_test::eventually([&] {
      std::shared_lock lock(mu);
      return a == writers * per_writer + per_writer / 4;
    }));
    writing_done = true;
    wg.wait();
    CHECK(a == writers * per_writer + per_writer / 4);
    CHECK(b == a);
    CHECK(overlaps.load() == 0);
    CHECK(torn.load() == 0);
    CHECK(reads.load() > 0);
  });
}

TEST_CASE("writer preference: a waiting writer blocks new readers, and goes before them") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::shared_mutex mu;
    goro::chan<std::string> order{4};
    mu.lock_shared();  // an existing reader
    goro::spawn({.name = "writer"}, [&, order] {
      mu.lock();
      order.send("writer");
      mu.unlock();
    });
    REQUIRE(until_parked("writer", goro::wait_reason::mutex_lock));
    // A writer waits: new readers must not get in, not even by try.
    CHECK_FALSE(mu.try_lock_shared());
    goro::spawn({.name = "late-reader"}, [&, order] {
      mu.lock_shared();
      order.send("late-reader");
      mu.unlock_shared();
    });
    REQUIRE(until_parked("late-reader", goro::wait_reason::mutex_lock));
    CHECK(order.try_recv().status == goro::chan_op::would_block);
    mu.unlock_shared();  // the last old reader leaves: the writer goes first
    CHECK(order.recv() == "writer");
    CHECK(order.recv() == "late-reader");
    CHECK(mu.try_lock());
    mu.unlock();
  });
}

TEST_CASE("readers that queued behind a writer all get in together when it unlocks") {
  unsigned workers = GORO_WORKERS();
  const int readers = 6;
  goro_test::run_in_goro(workers, [&] {
    goro::shared_mutex mu;
    mu.lock();
    std::atomic<int> inside{0}, max_inside{0};
    std::atomic<int> arrived{0};
    goro::chan<int> all_in{0};
    goro::wait_group wg;
    wg.add(readers);
    for (int i = 0; i < readers; ++i)
      goro::spawn({.name = "queued-reader"}, [&, all_in] {
        mu.lock_shared();
        raise_to(max_inside, inside.fetch_add(1) + 1);
        if (arrived.fetch_add(1) + 1 == readers) all_in.close();
        all_in.recv();
        inside.fetch_sub(1);
        mu.unlock_shared();
        wg.done();
      });
    REQUIRE(until_parked("queued-reader", goro::wait_reason::mutex_lock, readers));
    CHECK(inside.load() == 0);
    mu.unlock();
    wg.wait();
    CHECK(max_inside.load() == readers);
  });
}

TEST_CASE("std::unique_lock and std::shared_lock work, including try_to_lock") {
  goro_test::run_in_goro(2, [] {
    goro::shared_mutex mu;
    {
      std::unique_lock w(mu);
      CHECK(w.owns_lock());
      CHECK_FALSE(mu.try_lock_shared());
      CHECK_FALSE(mu.try_lock());
      std::shared_lock r(mu, std::try_to_lock);
      CHECK_FALSE(r.owns_lock());
    }
    {
      std::shared_lock r1(mu);
      std::shared_lock r2(mu, std::try_to_lock);
      CHECK(r2.owns_lock());
      std::unique_lock w(mu, std::try_to_lock);
      CHECK_FALSE(w.owns_lock());
    }
    std::unique_lock w(mu, std::try_to_lock);
    CHECK(w.owns_lock());
  });
}

TEST_CASE("a plain thread waiting for the write lock is woken by a fiber's unlock_shared") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::shared_mutex mu;
    mu.lock_shared();
    goro::chan<int> got{1};
    std::atomic<bool> started{false};
    std::thread t([&, got] {
      started = true;
      mu.lock();
      got.send(1);
      mu.unlock();
    });
    REQUIRE(goro_test::eventually([&] { return started.load(); }));
    CHECK(got.try_recv().status == goro::chan_op::would_block);  // we still hold a read share
    mu.unlock_shared();
    CHECK(got.recv() == 1);
    t.join();
  });
}

TEST_CASE("unlock_shared without a shared lock is a misuse") {
  goro_test::run_in_goro(1, [] {
    goro::shared_mutex mu;
    CHECK_THROWS_AS(mu.unlock_shared(), goro::misuse_error);
    // and the mutex is still usable
    mu.lock_shared();
    mu.unlock_shared();
    CHECK(mu.try_lock());
    mu.unlock();
  });
}

// Regression test for a fixed bug. It was: unlock_shared() without a shared
// lock unlocked its spinlock by hand and again in ~spin_guard while the
// misuse_error unwound, releasing whoever held the spinlock by then, so two
// threads could be inside its critical section at once.
// The correct users here only take the exclusive lock: no share is ever
// held, so every stray unlock_shared() is a detectable misuse (a
// shared_mutex cannot tell whose share a racing unlock_shared() releases
// when shares are held: that misuse is undetectable, as in std::).
// Only try_lock is used so that a broken state shows as a failed check,
// not a hang.
TEST_CASE("a misuse unlock_shared racing correct users leaves the shared_mutex consistent") {
  goro::shared_mutex mu;  // plain threads only: no runtime needed
  std::atomic<bool> stop{false};
  std::atomic<long> misuses{0}, unexpected{0}, ops{0};
  std::atomic<int> inside{0};
  std::thread bad([&] {
    while (!stop.load()) {
      try {
        mu.unlock_shared();  // never holds one
        unexpected.fetch_add(1);  // nobody holds a share: this must throw
      } catch (const goro::misuse_error&) {
        misuses.fetch_add(1);
      }
    }
  });
  std::vector<std::thread> users;
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  for (int t = 0; t < 2; ++t)
    users.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until && unexpected.load() == 0) {
        for (int i = 0; i < 1000; ++i) {
          if (!mu.try_lock()) continue;
          if (inside.fetch_add(1) != 0) unexpected.fetch_add(1);  // two exclusive owners
          inside.fetch_sub(1);
          mu.unlock();
          ops.fetch_add(1);
        }
      }
    });
  for (auto& u : users) u.join();
  stop = true;
  bad.join();
  INFO(misuses.load() << " misuses, " << ops.load() << " correct lock/unlock pairs");
  CHECK(misuses.load() > 0);
  CHECK(ops.load() > 0);
  CHECK(unexpected.load() == 0);
  CHECK(mu.try_lock_shared());  // no reader count or writer left behind
  mu.unlock_shared();
  CHECK(mu.try_lock());
  mu.unlock();
}
