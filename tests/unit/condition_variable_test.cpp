// SPDX-License-Identifier: MIT
// goro::condition_variable: delivery, notify_one/notify_all, predicates, timed waits, fibers and plain threads.
// The only sleeps here pace the notifiers of the timeout-vs-notify stress
// test, so that some waiters time out while others are notified: they are
// the stimulus, and the test waits for its waiters on a wait group.
#include "goro_test.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
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

// Fibers parked on a condition variable (snapshot).
std::size_t parked_in_cond_wait() {
  auto all = goro::list_fibers();
  return static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [](const goro::fiber_info& f) {
    return f.state == goro::fiber_state::waiting && f.reason == goro::wait_reason::cond_wait;
  }));
}

using clock_type = std::chrono::steady_clock;

}  // namespace

TEST_CASE("a bounded producer/consumer queue delivers every item exactly once") {
  unsigned workers = GORO_WORKERS();
  const int producers = 4, consumers = 4;
  const long per_producer = goro_test::scaled(2000, 100);
  const std::size_t capacity = 8;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable not_empty, not_full;
    std::deque<long> queue;  // under m
    bool closed = false;     // under m
    std::vector<int> seen(static_cast<std::size_t>(producers * per_producer), 0);  // under m
    std::atomic<long> oversize{0};
    goro::wait_group producing, consuming;
    producing.add(producers);
    consuming.add(consumers);
    for (int p = 0; p < producers; ++p)
      goro::spawn({.name = "producer"}, [&, p] {
        for (long i = 0; i < per_producer; ++i) {
          std::unique_lock lock(m);
          not_full.wait(lock, [&] { return queue.size() < capacity; });
          queue.push_back(p * per_producer + i);
          if (queue.size() > capacity) oversize.fetch_add(1);
          not_empty.notify_one();
        }
        producing.done();
      });
    for (int c = 0; c < consumers; ++c)
      goro::spawn({.name = "consumer"}, [&] {
        for (;;) {
          std::unique_lock lock(m);
          not_empty.wait(lock, [&] { return !queue.empty() || closed; });
          if (queue.empty()) break;  // closed and drained
          long item = queue.front();
          queue.pop_front();
          ++seen[static_cast<std::size_t>(item)];
          not_full.notify_one();
        }
        consuming.done();
      });
    REQUIRE(join_within(producing));
    {
      std::lock_guard lock(m);
      closed = true;
    }
    not_empty.notify_all();
    REQUIRE(join_within(consuming));
    CHECK(queue.empty());
    CHECK(oversize.load() == 0);
    CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(seen.size()));
  });
}

TEST_CASE("notify_all wakes every waiter") {
  unsigned workers = GORO_WORKERS();
  const int waiters = 40;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    std::atomic<int> woken{0};
    goro::wait_group wg;
    wg.add(waiters);
    for (int i = 0; i < waiters; ++i)
      goro::spawn([&] {
        std::unique_lock lock(m);
        cv.wait(lock);  // no predicate: only a notify can end this wait
        woken.fetch_add(1);
        wg.done();
      });
    REQUIRE(goro_test::eventually([&] { return parked_in_cond_wait() == waiters; }));
    CHECK(woken.load() == 0);
    cv.notify_all();  // once: a waiter it missed would stay parked
    REQUIRE(join_within(wg));
    CHECK(woken.load() == waiters);
  });
}

TEST_CASE("notify_one wakes one waiter at a time") {
  unsigned workers = GORO_WORKERS();
  const int waiters = 8;
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    std::atomic<int> woken{0};
    goro::wait_group wg;
    wg.add(waiters);
    for (int i = 0; i < waiters; ++i)
      goro::spawn([&] {
        std::unique_lock lock(m);
        cv.wait(lock);
        woken.fetch_add(1);
        wg.done();
      });
    REQUIRE(goro_test::eventually([&] { return parked_in_cond_wait() == waiters; }));
    for (int k = 1; k <= waiters; ++k) {
      cv.notify_one();
      REQUIRE(goro_test::eventually([&] { return woken.load() >= k; }));
      // Exactly one more: the rest are still parked (a second fiber woken by
      // mistake is either counted already or no longer parked).
      CHECK(woken.load() == k);
      CHECK(parked_in_cond_wait() == static_cast<std::size_t>(waiters - k));
    }
    wg.wait();
    cv.notify_one();  // with no waiter: nothing happens
    cv.notify_all();
  });
}

TEST_CASE("wait with a predicate returns only once the predicate holds") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    bool ready = false;  // under m
    int checks = 0;      // under m: predicate evaluations
    std::atomic<bool> returned{false};
    bool saw_ready = false;
    goro::wait_group wg;
    wg.add(1);
    goro::spawn({.name = "predicate-waiter"}, [&] {
      std::unique_lock lock(m);
      cv.wait(lock, [&] {
        ++checks;
        return ready;
      });
      saw_ready = ready;
      returned = true;
      wg.done();
    });
    auto checks_now = [&] {
      std::lock_guard lock(m);
      return checks;
    };
    REQUIRE(goro_test::eventually([&] { return parked_in_cond_wait() == 1; }));
    CHECK(checks_now() == 1);
    // Notifications while the predicate is false: the waiter re-checks and
    // goes back to sleep each time.
    for (int k = 2; k <= 4; ++k) {
      cv.notify_all();
      REQUIRE(goro_test::eventually([&] { return checks_now() == k && parked_in_cond_wait() == 1; }));
      CHECK_FALSE(returned.load());
    }
    {
      std::lock_guard lock(m);
      ready = true;
    }
    cv.notify_one();
    REQUIRE(join_within(wg));
    CHECK(returned.load());
    CHECK(saw_ready);
    CHECK(checks == 5);
  });
}

TEST_CASE("wait_for times out when not notified and leaves no timer behind") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    std::unique_lock lock(m);
    auto start = clock_type::now();
    std::cv_status status = cv.wait_for(lock, 50ms);
    auto took = clock_type::now() - start;
    CHECK(status == std::cv_status::timeout);
    CHECK(took >= 50ms);
    CHECK(took < 5s);
    CHECK(lock.owns_lock());
    CHECK_FALSE(m.try_lock());  // re-acquired on return
    CHECK(goro::runtime_metrics().pending_timers == 0);

    // The predicate form returns the predicate's value at the deadline.
    start = clock_type::now();
    bool ok = cv.wait_for(lock, 20ms, [] { return false; });
    took = clock_type::now() - start;
    CHECK_FALSE(ok);
    CHECK(took >= 20ms);
    CHECK(took < 5s);
    CHECK(goro::runtime_metrics().pending_timers == 0);

    // wait_until a deadline in the past gives up at once.
    start = clock_type::now();
    status = cv.wait_until(lock, clock_type::now() - 1h);
    CHECK(status == std::cv_status::timeout);
    CHECK(clock_type::now() - start < 5s);

    // A deadline on another clock is converted to the steady clock.
    start = clock_type::now();
    status = cv.wait_until(lock, std::chrono::system_clock::now() + 30ms);
    took = clock_type::now() - start;
    CHECK(status == std::cv_status::timeout);
    CHECK(took >= 25ms);  // a little slack for reading two clocks
    CHECK(took < 5s);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

TEST_CASE("wait_for woken by notify before the deadline returns no_timeout") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    bool ready = false;  // under m
    std::cv_status status = std::cv_status::timeout;
    bool pred_result = false;
    clock_type::duration took{};
    goro::wait_group wg;
    wg.add(1);
    goro::spawn({.name = "timed-waiter"}, [&] {
      std::unique_lock lock(m);
      auto start = clock_type::now();
      status = cv.wait_for(lock, 30s);
      took = clock_type::now() - start;
      // And the predicate form, satisfied by a later notify.
      pred_result = cv.wait_for(lock, 30s, [&] { return ready; });
      wg.done();
    });
    REQUIRE(goro_test::eventually([&] { return parked_in_cond_wait() == 1; }));
    CHECK(goro::runtime_metrics().pending_timers >= 1);  // the waiter's deadline
    cv.notify_one();
    REQUIRE(goro_test::eventually([&] { return parked_in_cond_wait() == 1; }));  // in the second wait
    {
      std::lock_guard lock(m);
      ready = true;
    }
    cv.notify_one();
    REQUIRE(join_within(wg));
    CHECK(status == std::cv_status::no_timeout);
    CHECK(took < 5s);  // far from the 30 s deadline
    CHECK(pred_result);
    CHECK(goro::runtime_metrics().pending_timers == 0);  // the deadlines were cancelled
  });
}

TEST_CASE("a plain thread waits on a condition_variable that a fiber notifies") {
  unsigned workers = GORO_WORKERS();
  run_mixed(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    bool ready = false;         // under m
    bool entered = false;       // under m: the thread is about to wait
    bool thread_saw_ready = false;
    std::cv_status timed_status = std::cv_status::no_timeout;
    clock_type::duration timed_took{};
    goro::wait_group thread_done;
    thread_done.add(1);
    std::thread t([&] {
      std::unique_lock lock(m);
      // A timed wait on a plain thread with no notify times out.
      auto start = clock_type::now();
      timed_status = cv.wait_for(lock, 20ms);
      timed_took = clock_type::now() - start;
      entered = true;
      cv.wait(lock, [&] { return ready; });
      thread_saw_ready = ready;
      thread_done.done();
    });
    // The thread releases m only inside wait(): once we hold m and see
    // `entered`, it is queued on cv.
    REQUIRE(goro_test::eventually([&] {
      std::lock_guard lock(m);
      return entered;
    }));
    {
      std::lock_guard lock(m);
      ready = true;
      cv.notify_one();
    }
    REQUIRE(join_within(thread_done));
    t.join();
    CHECK(thread_saw_ready);
    CHECK(timed_status == std::cv_status::timeout);
    CHECK(timed_took >= 20ms);
    CHECK(timed_took < 5s);
  });
}

TEST_CASE("a fiber waits on a condition_variable that a plain thread notifies") {
  unsigned workers = GORO_WORKERS();
  run_mixed(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    bool ready = false, timed_ready = false;  // under m
    std::atomic<bool> entered{false}, timed_entered{false};
    bool fiber_saw_ready = false;
    std::cv_status timed_status = std::cv_status::timeout;
    goro::wait_group wg;
    wg.add(1);
    goro::spawn({.name = "thread-notified"}, [&] {
      std::unique_lock lock(m);
      entered = true;
      cv.wait(lock, [&] { return ready; });
      fiber_saw_ready = ready;
      // A timed wait ended by the thread's notify long before its deadline.
      timed_entered = true;
      timed_status = cv.wait_for(lock, 30s);
      wg.done();
    });
    std::thread t([&] {
      // The fiber releases m only inside wait(): once we hold m after it set
      // `entered`, it is queued on cv.
      while (!entered.load()) std::this_thread::yield();
      {
        std::lock_guard lock(m);
        ready = true;
        cv.notify_one();
      }
      while (!timed_entered.load()) std::this_thread::yield();
      std::lock_guard lock(m);
      timed_ready = true;
      cv.notify_one();
    });
    REQUIRE(join_within(wg));
    t.join();
    CHECK(fiber_saw_ready);
    CHECK(timed_status == std::cv_status::no_timeout);
    CHECK(timed_ready);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}

TEST_CASE("timed waiters racing notifications are each either notified or timed out") {
  unsigned workers = GORO_WORKERS();
  const int waiters = static_cast<int>(goro_test::scaled(400, 40));
  const int thread_waiters = 4;
  run_mixed(workers, [&] {
    goro::mutex m;
    goro::condition_variable cv;
    std::atomic<int> timeouts{0}, notified{0};
    std::atomic<bool> stop{false};
    goro::wait_group waiting, notifying;
    waiting.add(waiters + thread_waiters);
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> ms(1, 20);
    for (int i = 0; i < waiters; ++i) {
      auto d = std::chrono::milliseconds(ms(rng));
      goro::spawn([&, d] {
        std::unique_lock lock(m);
        if (cv.wait_for(lock, d) == std::cv_status::timeout)
          timeouts.fetch_add(1);
        else
          notified.fetch_add(1);
        waiting.done();
      });
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < thread_waiters; ++i) {
      auto d = std::chrono::milliseconds(ms(rng));
      threads.emplace_back([&, d] {
        std::unique_lock lock(m);
        if (cv.wait_for(lock, d) == std::cv_status::timeout)
          timeouts.fetch_add(1);
        else
          notified.fetch_add(1);
        waiting.done();
      });
    }
    // Notifiers, a fiber and a plain thread, until every waiter is back. Paced
    // so that some waiters are notified and others time out, and a timeout and
    // a notify often race for the same waiter.
    notifying.add(1);
    goro::spawn([&] {
      for (int i = 0; !stop.load(); ++i) {
        cv.notify_one();
        if (i % 2 == 0) goro::sleep_for(500us);  // stimulus: pacing, so some waiters time out and some are notified
        else goro::yield();
      }
      notifying.done();
    });
    threads.emplace_back([&] {
      for (int i = 1; !stop.load(); ++i) {
        if (i % 16 == 0) cv.notify_all();
        else cv.notify_one();
        std::this_thread::sleep_for(1ms);  // stimulus: pacing, so some waiters time out and some are notified
      }
    });
    waiting.wait();
    stop = true;
    notifying.wait();
    for (auto& t : threads) t.join();
    INFO("timed out: " << timeouts.load() << ", notified: " << notified.load());
    CHECK(timeouts.load() + notified.load() == waiters + thread_waiters);
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
}
