// SPDX-License-Identifier: MIT
// goro::once: exactly one call under concurrency from fibers and threads, callers wait for it, and a throwing call counts as done (Go semantics).
#include "goro_test.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("once runs its function exactly once, and every caller returns after it has finished") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 64, threads = 3;
  const long rounds = goro_test::scaled(30, 5);
  goro_test::run_in_goro(workers, [&] {
    for (long r = 0; r < rounds; ++r) {
      goro::once once;
      std::atomic<int> calls{0}, arrived{0}, saw_unset{0};
      long value = 0;  // written by the one call, read by every caller after call() returns
      auto fn = [&] {
        calls.fetch_add(1);
        // Hold the call until every caller is inside call(): they must wait.
        goro_test::eventually([&] { return arrived.load() == fibers + threads; }, 10s);
        value = 42;
      };
      auto caller = [&] {
        arrived.fetch_add(1);
        once.call(fn);
        if (value != 42) saw_unset.fetch_add(1);
      };
      goro::wait_group wg;
      wg.add(fibers);
      for (int i = 0; i < fibers; ++i)
        goro::spawn([&] {
          caller();
          wg.done();
        });
      std::vector<std::thread> ts;
      for (int i = 0; i < threads; ++i) ts.emplace_back(caller);
      wg.wait();
      for (auto& t : ts) t.join();
      CHECK(calls.load() == 1);
      CHECK(saw_unset.load() == 0);
      CHECK(once.done());
      once.call([&] { calls.fetch_add(1); });  // later calls do nothing
      CHECK(calls.load() == 1);
    }
  });
}

TEST_CASE("done() is false until the call has returned") {
  goro_test::run_in_goro(2, [] {
    goro::once once;
    CHECK_FALSE(once.done());
    goro::chan<int> inside{1}, release{0};
    goro::chan<int> returned{1};
    goro::spawn([&, inside, release, returned] {
      once.call([&] {
        inside.send(1);
        release.recv();
      });
      returned.send(1);
    });
    inside.recv();
    CHECK_FALSE(once.done());  // still running
    release.send(1);
    returned.recv();
    CHECK(once.done());
  });
}

TEST_CASE("a throwing call counts as the one call: its caller gets the exception, later calls do nothing") {
  goro_test::run_in_goro(2, [] {
    goro::once once;
    int calls = 0;
    CHECK_THROWS_WITH(once.call([&] {
                        ++calls;
                        throw std::runtime_error("init failed");
                      }),
                      "init failed");
    CHECK(once.done());
    once.call([&] { ++calls; });
    CHECK(calls == 1);
  });
}

TEST_CASE("under concurrency only the caller that ran the throwing call sees its exception") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 32;
  goro_test::run_in_goro(workers, [&] {
    goro::once once;
    std::atomic<int> calls{0}, exceptions{0}, arrived{0};
    goro::wait_group wg;
    wg.add(fibers);
    for (int i = 0; i < fibers; ++i)
      goro::spawn([&] {
        arrived.fetch_add(1);
        try {
          once.call([&] {
            calls.fetch_add(1);
            goro_test::eventually([&] { return arrived.load() == fibers; }, 10s);
            throw std::runtime_error("boom");
          });
        } catch (const std::runtime_error&) {
          exceptions.fetch_add(1);
        }
        wg.done();
      });
    wg.wait();
    CHECK(calls.load() == 1);
    CHECK(exceptions.load() == 1);
    CHECK(once.done());
  });
}
