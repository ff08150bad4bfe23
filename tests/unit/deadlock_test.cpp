// SPDX-License-Identifier: MIT
// Global deadlock detection: run() throws deadlock_error when nothing can wake any fiber, and only then.
// Sleeps in this file are time the detector must sit through: the main
// fiber's pending timer (the behaviour under test: not a deadlock), a
// plain thread's silence longer than the grace period, or its wake-ups
// spaced in time (the stimulus). None waits for other work to settle (that
// is what wait groups are for).
#include "goro_test.hpp"

#include <goro/mutex.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

goro::run_options detecting(unsigned workers, std::chrono::milliseconds grace) {
  goro::run_options o;
  o.workers = workers;
  o.detect_deadlock = true;
  o.deadlock_grace = grace;
  return o;
}

// The detector answers within the grace period (50 ms here); past this limit
// it has failed to.
constexpr auto watchdog_limit = 2s;

// Turns a detector that never fires into a failed test instead of a hung one:
// unless stop() comes first, releases `gate` (the wait_group the main fiber is
// stuck on) from this plain thread after `limit`, so run() returns normally.
// (It can only race with a detector that fires exactly at `limit`.)
class watchdog {
 public:
  watchdog(goro::wait_group& gate, std::chrono::milliseconds limit)
      : thread_([this, &gate, limit] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return stopped_; })) {
            fired_ = true;
            gate.done();
          }
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() { stop(); }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  bool fired() {
    std::lock_guard lock(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: starts after the fields it uses
};

}  // namespace

// Regression guard for a bug found while writing these tests: the worker that
// waited out the grace period left the idle list *before* calling
// scheduler::maybe_declare_deadlock(), which requires every worker (itself
// included) to be idle, so no deadlock was ever declared and run() hung. The
// watchdog turns such a hang into a failed assertion.
TEST_CASE("all fibers blocked with nothing to wake them is a deadlock naming them", "[deadlock]") {
  unsigned workers = GORO_WORKERS();
  goro::testing::leak_baseline base;
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;

  // Declared outside run(): the blocked fibers are unwound after run()'s
  // function is abandoned, and must not outlive what they wait on.
  goro::mutex mu;
  goro::wait_group never;
  never.add(1);
  std::atomic<int> unwound{0};
  struct count_unwind {
    std::atomic<int>* n;
    ~count_unwind() { n->fetch_add(1); }
  };

  std::optional<std::string> what;
  auto start = std::chrono::steady_clock::now();
  {
    watchdog dog(never, watchdog_limit);
    try {
      goro::run(detecting(workers, 50ms), [&] {
        count_unwind guard{&unwound};
        mu.lock();
        goro::wait_group stuck;
        stuck.add(2);
        for (const char* name : {"stuck-on-mutex-a", "stuck-on-mutex-b"})
          goro::spawn({.name = name}, [&] {
            count_unwind inner{&unwound};
            mu.lock();
            mu.unlock();
            stuck.done();
          });
        never.wait();
        // Only reached when the watchdog released us: let the others finish.
        mu.unlock();
        stuck.wait();
      });
    } catch (const goro::deadlock_error& e) {
      what = e.what();
    }
    dog.stop();
    CHECK_FALSE(dog.fired());
  }
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(what);
  INFO(*what);
  CHECK(contains(*what, "all fibers are asleep"));
  CHECK(contains(*what, "\"stuck-on-mutex-a\""));
  CHECK(contains(*what, "\"stuck-on-mutex-b\""));
  CHECK(contains(*what, "\"main\""));
  CHECK(contains(*what, "sync.Mutex.Lock"));
  CHECK(contains(*what, "sync.WaitGroup.Wait"));
  CHECK(contains(*what, "deadlock_test.cpp"));
  CHECK(took >= 40ms);  // not before the grace period
  CHECK(took < watchdog_limit);

  // Everything was unwound (destructors ran), and a deadlock's leftovers are
  // not counted as leaks: the error already reports them.
  CHECK(unwound.load() == 3);
  CHECK(goro::live_fibers() == 0);
  CHECK(goro::runtime_metrics().unwound_at_shutdown == unwound_before);
  CHECK_NOTHROW(goro::testing::check_since(base, 0ms));
}

TEST_CASE("a lone main fiber blocked forever is a deadlock", "[deadlock]") {
  unsigned workers = GORO_WORKERS();
  goro::wait_group never;
  never.add(1);
  std::optional<std::string> what;
  {
    watchdog dog(never, watchdog_limit);
    try {
      goro::run(detecting(workers, 50ms), [&] { never.wait(); });
    } catch (const goro::deadlock_error& e) {
      what = e.what();
    }
    dog.stop();
    CHECK_FALSE(dog.fired());
  }
  REQUIRE(what);
  INFO(*what);
  CHECK(contains(*what, "all fibers are asleep"));
  CHECK(contains(*what, "\"main\""));
  CHECK(contains(*what, "sync.WaitGroup.Wait"));
}

TEST_CASE("no deadlock while a timer is pending") {
  unsigned workers = GORO_WORKERS();
  auto start = std::chrono::steady_clock::now();
  int result = 0;
  CHECK_NOTHROW(result = goro::run(detecting(workers, 50ms), [] {
    // A fiber blocked on a wait_group that only the sleeping main releases.
    goro::wait_group gate, finished;
    gate.add(1);
    finished.add(1);
    goro::spawn({.name = "waits-for-sleeper"}, [&] {
      gate.wait();
      finished.done();
    });
    goro::sleep_for(300ms);  // the behaviour under test: a pending timer, six grace periods long, is not a deadlock
    gate.done();
    finished.wait();
    goro::testing::expect_no_leaked_fibers();
    return 7;
  }));
  CHECK(result == 7);
  CHECK(std::chrono::steady_clock::now() - start >= 290ms);
}

TEST_CASE("no deadlock while a plain thread keeps waking the main fiber") {
  unsigned workers = GORO_WORKERS();
  // Each wake-up comes well within the grace period; together they last far
  // longer than it, so a detector that does not restart its grace period on
  // each wake-up from a plain thread would fire.
  constexpr int rounds = 25;
  constexpr auto period = 20ms;
  std::array<goro::wait_group, rounds> steps;
  for (auto& s : steps) s.add(1);
  std::thread waker;
  auto start = std::chrono::steady_clock::now();
  int woken = 0;
  CHECK_NOTHROW(woken = goro::run(detecting(workers, 200ms), [&] {
    waker = std::thread([&] {
      for (auto& s : steps) {
        std::this_thread::sleep_for(period);  // stimulus: wake-ups spaced in time
        s.done();
      }
    });
    int n = 0;
    for (auto& s : steps) {
      s.wait();
      ++n;
    }
    return n;
  }));
  if (waker.joinable()) waker.join();
  CHECK(woken == rounds);
  CHECK(std::chrono::steady_clock::now() - start >= rounds * period - 10ms);
}

TEST_CASE("detect_deadlock=false waits for a plain thread however long it takes") {
  unsigned workers = GORO_WORKERS();
  goro::run_options o = detecting(workers, 50ms);
  o.detect_deadlock = false;
  goro::wait_group released;
  released.add(1);
  std::thread late_waker;
  auto start = std::chrono::steady_clock::now();
  bool returned = false;
  CHECK_NOTHROW(returned = goro::run(o, [&] {
    late_waker = std::thread([&] {
      std::this_thread::sleep_for(400ms);  // stimulus: eight grace periods of silence before the wake-up the runtime must wait for
      released.done();
    });
    released.wait();
    return true;
  }));
  if (late_waker.joinable()) late_waker.join();
  CHECK(returned);
  CHECK(std::chrono::steady_clock::now() - start >= 390ms);
}
