// SPDX-License-Identifier: MIT
// goro::semaphore: weighted FIFO grants, try_acquire, release order, misuse, cancellation of waiters (the front one included), exact bounds under contention.
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;

namespace {

using goro_test::parked;
using goro_test::until_parked;

void raise_to(std::atomic<long>& maximum, long v) {
  long m = maximum.load();
  while (v > m && !maximum.compare_exchange_weak(m, v)) {
  }
}

}  // namespace

TEST_CASE("acquire and try_acquire take units while they fit; release gives them back") {
  goro_test::run_in_goro(1, [] {
    goro::semaphore sem(5);
    CHECK(sem.size() == 5);
    CHECK(sem.in_use() == 0);
    sem.acquire(3);
    CHECK(sem.in_use() == 3);
    CHECK(sem.try_acquire(2));
    CHECK(sem.in_use() == 5);
    CHECK_FALSE(sem.try_acquire(1));
    sem.release(4);
    CHECK(sem.in_use() == 1);
    CHECK_FALSE(sem.try_acquire(5));
    CHECK(sem.try_acquire(4));
    CHECK_FALSE(sem.acquire(goro::background(), 0));  // zero units always fit
    sem.release(5);
    CHECK(sem.in_use() == 0);
  });
}

TEST_CASE("misuse: acquiring more than the size, or releasing more than held, throws misuse_error") {
  goro_test::run_in_goro(1, [] {
    goro::semaphore sem(4);
    CHECK_THROWS_AS(sem.acquire(5), goro::misuse_error);
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    CHECK_THROWS_AS(sem.acquire(ctx, 5), goro::misuse_error);
    CHECK(sem.in_use() == 0);
    sem.acquire(2);
    CHECK_THROWS_AS(sem.release(3), goro::misuse_error);
    CHECK(sem.in_use() == 2);  // the failed release changed nothing
    sem.release(2);
    CHECK(sem.try_acquire(4));  // and the semaphore still works
    sem.release(4);
    cancel();
  });
}

TEST_CASE("weighted FIFO: a big request at the front blocks later small ones that would fit") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(10);
    sem.acquire(8);  // 2 free
    goro::chan<std::string> granted{4};
    goro::spawn({.name = "big"}, [&, granted] {
      sem.acquire(5);
      granted.send("big");
    });
    REQUIRE(until_parked("big", goro::wait_reason::semaphore));
    goro::spawn({.name = "small"}, [&, granted] {
      sem.acquire(1);  // 1 would fit, but big is first
      granted.send("small");
    });
    REQUIRE(until_parked("small", goro::wait_reason::semaphore));
    CHECK_FALSE(sem.try_acquire(1));  // try_acquire does not overtake waiters either
    CHECK(sem.in_use() == 8);
    CHECK(granted.try_recv().status == goro::chan_op::would_block);

    sem.release(3);  // 5 free: exactly big's request
    CHECK(granted.recv() == "big");
    CHECK(sem.in_use() == 10);
    CHECK(parked("small", goro::wait_reason::semaphore) == 1);  // still waiting: nothing is free

    sem.release(5);  // big's units
    CHECK(granted.recv() == "small");
    CHECK(sem.in_use() == 6);
    sem.release(6);
    CHECK(sem.in_use() == 0);
  });
}

TEST_CASE("one release grants every front request that fits, in order, and stops at the first that does not") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(10);
    sem.acquire(10);
    const std::vector<int> sizes = {2, 3, 1, 6, 1};
    goro::chan<int> granted{8};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      goro::spawn({.name = "waiter"}, [&, i, granted] {
        sem.acquire(sizes[i]);
        granted.send(static_cast<int>(i));
      });
      REQUIRE(until_parked("waiter", goro::wait_reason::semaphore, i + 1));
    }
    sem.release(7);  // 2 + 3 + 1 fit; 6 does not (1 left), so the last 1 waits behind it
    std::vector<int> first;
    for (int k = 0; k < 3; ++k) first.push_back(granted.recv().value());
    std::sort(first.begin(), first.end());
    CHECK(first == std::vector<int>{0, 1, 2});
    CHECK(sem.in_use() == 9);
    CHECK(parked("waiter", goro::wait_reason::semaphore) == 2);
    sem.release(9);  // everything back: 6 and then 1
    std::vector<int> rest{granted.recv().value(), granted.recv().value()};
    std::sort(rest.begin(), rest.end());
    CHECK(rest == std::vector<int>{3, 4});
    CHECK(sem.in_use() == 7);
    sem.release(7);
  });
}

TEST_CASE("waiters are granted in arrival order, one release at a time") {
  unsigned workers = GORO_WORKERS();
  const int n = 20;
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(1);
    sem.acquire();
    goro::chan<int> order{n};
    for (int i = 0; i < n; ++i) {
      goro::spawn({.name = "queued"}, [&, i, order] {
        sem.acquire();
        order.send(i);
        sem.release();  // hands the unit to the next in line
      });
      REQUIRE(until_parked("queued", goro::wait_reason::semaphore, static_cast<std::size_t>(i + 1)));
    }
    sem.release();
    std::vector<int> seen;
    for (int i = 0; i < n; ++i) seen.push_back(order.recv().value());
    std::vector<int> expected;
    for (int i = 0; i < n; ++i) expected.push_back(i);
    CHECK(seen == expected);
    CHECK(sem.in_use() == 0);
  });
}

TEST_CASE("cancelling the front waiter lets the later ones proceed without a release") {
  unsigned workers = GORO_WORKERS();
  bool from_thread = GENERATE(false, true);
  INFO((from_thread ? "cancelled from a plain thread" : "cancelled from a fiber") << ", " << workers << " workers");
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(10);
    sem.acquire(8);  // 2 free
    goro::context ctx;
    goro::cancel_func cancel;
    std::tie(ctx, cancel) = goro::with_cancel(goro::background());
    goro::chan<std::error_code> front_result{1};
    goro::chan<int> granted{2};
    goro::spawn({.name = "front"}, [&, ctx, front_result] { front_result.send(sem.acquire(ctx, 5)); });
    REQUIRE(until_parked("front", goro::wait_reason::semaphore));
    for (int i = 0; i < 2; ++i) {
      goro::spawn({.name = "behind"}, [&, i, granted] {
        sem.acquire(1);
        granted.send(i);
      });
      REQUIRE(until_parked("behind", goro::wait_reason::semaphore, static_cast<std::size_t>(i + 1)));
    }
    CHECK(sem.in_use() == 8);
    if (from_thread) {
      std::thread t([&] { cancel(); });
      t.join();
    } else {
      goro::spawn([cancel] { cancel(); });
    }
    CHECK(front_result.recv() == goro::context_errc::canceled);
    granted.recv();
    granted.recv();
    CHECK(sem.in_use() == 10);  // 8 + the two behind; nothing for the cancelled one
    sem.release(10);
    CHECK(sem.try_acquire(10));
    sem.release(10);
  });
}

TEST_CASE("a cancelled waiter in the middle of the queue takes nothing and leaves the order intact") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(3);
    sem.acquire(3);
    auto [ctx, cancel] = goro::with_cancel(goro::background());
    goro::chan<int> order{4};
    goro::chan<std::error_code> middle{1};
    goro::spawn({.name = "q"}, [&, order] {
      sem.acquire(1);
      order.send(0);
    });
    REQUIRE(until_parked("q", goro::wait_reason::semaphore, 1));
    goro::spawn({.name = "q"}, [&, c = ctx, middle] { middle.send(sem.acquire(c, 2)); });
    REQUIRE(until_parked("q", goro::wait_reason::semaphore, 2));
    goro::spawn({.name = "q"}, [&, order] {
      sem.acquire(2);
      order.send(2);
    });
    REQUIRE(until_parked("q", goro::wait_reason::semaphore, 3));
    cancel();
    CHECK(middle.recv() == goro::context_errc::canceled);
    sem.release(1);  // the first's unit
    CHECK(order.recv() == 0);
    CHECK(sem.in_use() == 3);
    sem.release(2);  // exactly the last one's request: the cancelled 2 are not in the way
    CHECK(order.recv() == 2);
    CHECK(sem.in_use() == 3);
    sem.release(3);
  });
}

TEST_CASE("weighted acquires never exceed the size, and fibers and threads all get through") {
  unsigned workers = GORO_WORKERS();
  const long per_fiber = goro_test::scaled(300, 30);
  const int fibers = 16, threads = 2;
  const long size = 5;
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(size);
    std::atomic<long> held{0}, max_held{0}, ops{0};
    auto worker = [&](int who, bool in_fiber) {
      for (long i = 0; i < per_fiber; ++i) {
        long n = 1 + (who + i) % 3;
        sem.acquire(n);
        raise_to(max_held, held.fetch_add(n) + n);
        if (in_fiber && i % 4 == 0) goro::yield();
        held.fetch_sub(n);
        sem.release(n);
        ops.fetch_add(1);
      }
    };
    goro::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f)
      goro::spawn([&, f] {
        worker(f, true);
        wg.done();
      });
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { worker(fibers + t, false); });
    wg.wait();
    for (auto& t : ts) t.join();
    CHECK(ops.load() == (fibers + threads) * per_fiber);
    CHECK(max_held.load() <= size);
    CHECK(max_held.load() >= 3);
    CHECK(sem.in_use() == 0);
  });
}

TEST_CASE("cancelled and granted waiters race: every acquire either holds its units or took none") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(300, 30);
  goro_test::run_in_goro(workers, [&] {
    goro::semaphore sem(4);
    long got = 0, cancelled = 0;
    for (long r = 0; r < rounds; ++r) {
      sem.acquire(4);
      auto [ctx, cancel] = goro::with_cancel(goro::background());
      goro::chan<std::error_code> results{4};
      for (int i = 0; i < 4; ++i)
        goro::spawn({.name = "racer"}, [&, c = ctx, results] {
          std::error_code e = sem.acquire(c, 1);
          results.send(e);
        });
      REQUIRE(until_parked("racer", goro::wait_reason::semaphore, 4));
      std::thread t([&, c = cancel] { c(); });
      sem.release(4);
      t.join();
      long round_got = 0;
      for (int i = 0; i < 4; ++i) {
        if (results.recv().value())
          ++cancelled;
        else
          ++round_got;
      }
      got += round_got;
      CHECK(sem.in_use() == round_got);  // granted units are held, cancelled ones took nothing
      sem.release(round_got);
      CHECK(sem.in_use() == 0);
    }
    CHECK(got + cancelled == 4 * rounds);
  });
}

// Regression test for a fixed bug. It was: semaphore::release() of more than
// is held calls lock_.unlock() by hand and then throws from inside the
// spin_guard's scope, so ~spin_guard unlocks lock_ a second time during
// unwinding. throw_misuse() first builds its message (describe_current_fiber
// takes the process lock, allocates), so by then another thread may hold
// lock_: the stray unlock releases *its* critical section and a third party
// enters it too. used_ then loses updates: a correct release() later throws
// "released more than held", or units leak. A misuse must leave the
// semaphore as it was. (shared_mutex::unlock_shared() has the same pattern.)
TEST_CASE("a misuse release racing correct users leaves the semaphore consistent") {
  // Plain threads only (the semaphore needs no runtime for these calls).
  {
    goro::semaphore sem(4);
    std::atomic<bool> stop{false};
    std::atomic<long> misuses{0}, unexpected{0}, ops{0};
    std::thread bad([&] {
      while (!stop.load()) {
        try {
          sem.release(5);  // always more than held
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
            if (!sem.try_acquire(1)) continue;
            try {
              sem.release(1);  // correct: we hold it
            } catch (const goro::misuse_error&) {
              unexpected.fetch_add(1);
            }
            ops.fetch_add(1);
          }
        }
      });
    for (auto& u : users) u.join();
    stop = true;
    bad.join();
    INFO(misuses.load() << " misuses, " << ops.load() << " correct acquire/release pairs");
    CHECK(misuses.load() > 0);
    CHECK(unexpected.load() == 0);
    CHECK(sem.in_use() == 0);
  }
}
