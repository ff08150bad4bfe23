// SPDX-License-Identifier: MIT
// Diagnostics: live_fibers(), list_fibers(), dump_fibers() and runtime_metrics() describe what is really there.
#include "goro_test.hpp"

#include <goro/mutex.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

namespace {

// The live fiber called `name`, if there is exactly one.
std::optional<goro::fiber_info> find_fiber(const std::string& name) {
  std::optional<goro::fiber_info> found;
  int matches = 0;
  for (auto& info : goro::list_fibers()) {
    if (info.name == name) {
      found = info;
      ++matches;
    }
  }
  if (matches != 1) return std::nullopt;
  return found;
}

// Waits until the fiber called `name` is parked for `reason`; returns its snapshot.
std::optional<goro::fiber_info> wait_until_parked(const std::string& name, goro::wait_reason reason) {
  std::optional<goro::fiber_info> seen;
  bool ok = goro_test::eventually([&] {
    seen = find_fiber(name);
    return seen && seen->state == goro::fiber_state::waiting && seen->reason == reason;
  });
  if (!ok) return std::nullopt;
  return seen;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("live_fibers counts the main fiber and parked fibers") {
  unsigned workers = GORO_WORKERS();
  REQUIRE(goro::live_fibers() == 0);
  goro_test::run_in_goro(workers, [] {
    CHECK(goro::live_fibers() == 1);  // the main fiber itself

    const int n = 8;
    goro::wait_group gate, parked, finished;
    gate.add(1);
    parked.add(n);
    finished.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "counted"}, [&] {
        parked.done();
        gate.wait();
        finished.done();
      });
    // Registered as soon as spawn() returns, whether they ran yet or not.
    CHECK(goro::live_fibers() == 1 + n);
    parked.wait();
    CHECK(goro_test::eventually([&] {
      auto all = goro::list_fibers();
      return std::count_if(all.begin(), all.end(), [](const goro::fiber_info& f) {
               return f.name == "counted" && f.state == goro::fiber_state::waiting;
             }) == n;
    }));
    CHECK(goro::live_fibers() == 1 + n);

    gate.done();
    finished.wait();
    // done() comes before the fiber's exit: the count falls a moment later.
    CHECK(goro_test::eventually([] { return goro::live_fibers() == 1; }));
  });
  CHECK(goro::live_fibers() == 0);
}

// The registry is sharded by spawning worker, so a fiber that exits on the
// other worker leaves a shard that is not its exiting worker's. It must leave
// the count and the list with its exit, with no help from its spawner's
// worker (an unlink deferred to that worker must never show a dead fiber).
// The main fiber keeps its worker busy without yielding, so the child can only
// run on the other worker, and the spawner's worker does nothing meanwhile.
TEST_CASE("a fiber that exited on another worker than its spawner's is neither counted nor listed") {
  goro_test::run_in_goro(2, [] {
    std::atomic<bool> ran{false};
    goro::spawn({.name = "stolen"}, [&ran] { ran.store(true); });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!ran.load() && std::chrono::steady_clock::now() < deadline) {
    }
    REQUIRE(ran.load());
    while (goro::live_fibers() != 1 && std::chrono::steady_clock::now() < deadline) {
    }
    CHECK(goro::live_fibers() == 1);
    auto all = goro::list_fibers();
    CHECK(all.size() == 1);
    CHECK(std::none_of(all.begin(), all.end(), [](const goro::fiber_info& f) { return f.name == "stolen"; }));
  });
  CHECK(goro::live_fibers() == 0);
}

// Spawns are registered by the spawning worker and exits clear their slot
// from whichever worker runs them, with no lock between the two; walkers pin
// a slot while they read its fiber. Under churn on both workers, every walk
// must list each parked fiber exactly once, and live_fibers() (spawns minus
// exits, read in that order so it cannot underflow) must stay between what
// is surely alive and an underflow. (A wrong read order, spawns before
// exits, undercounts only when a fiber is spawned and exits between the two
// reads: this catches it in some runs, not every one. Under ASan and TSan the
// walks also check the pin: a fiber freed under a walker is a report there.)
TEST_CASE("live_fibers and list_fibers hold while fibers come and go on every worker") {
  goro_test::run_in_goro(2, [] {
    const std::size_t anchors = 64;
    goro::wait_group gate, parked;
    gate.add(1);
    parked.add(static_cast<std::int64_t>(anchors));
    for (std::size_t i = 0; i < anchors; ++i)
      goro::spawn({.name = "anchor"}, [&] {
        parked.done();
        gate.wait();
      });
    parked.wait();

    const long rounds = goro_test::scaled(200'000, 5'000);
    std::atomic<int> churning{2};
    for (int spawner = 0; spawner < 2; ++spawner)
      goro::spawn([&] {
        goro::wait_group wg;
        for (long i = 0; i < rounds; ++i) {
          wg.add(1);
          goro::spawn([&wg] { wg.done(); });
          if (i % 64 == 63) wg.wait();  // at most 64 in flight per spawner
        }
        wg.wait();
        churning.fetch_sub(1);
      });

    // Alive for sure: main, the anchors: never fewer. More only by spawns
    // that land during a read (a preempted reader can see thousands), so the
    // upper bound is loose: it catches an underflow, which wraps to ~2^64.
    const std::size_t at_least = 1 + anchors, at_most = 1'000'000;
    long walks = 0, bad_counts = 0, bad_lists = 0;
    std::size_t worst_live = at_least;
    while (churning.load() > 0) {
      for (int read = 0; read < 32; ++read) {  // reads are cheap, walks are not
        const std::size_t live = goro::live_fibers();
        if (live < at_least || live > at_most) {
          ++bad_counts;
          worst_live = live;
        }
      }
      auto all = goro::list_fibers();
      std::vector<std::uint64_t> ids;
      std::size_t seen = 0;
      for (auto& f : all) {
        ids.push_back(f.id);
        if (f.name == "anchor") ++seen;
      }
      std::sort(ids.begin(), ids.end());
      if (seen != anchors || std::adjacent_find(ids.begin(), ids.end()) != ids.end()) ++bad_lists;
      ++walks;
      goro::this_fiber::yield();  // let a churn fiber queued here run
    }
    INFO("walks " << walks << ", a bad count: " << worst_live);
    CHECK(walks > 0);
    CHECK(bad_counts == 0);
    CHECK(bad_lists == 0);
    gate.done();
  });
}

// The registry's tables grow with the fibers alive at once, not with the
// number ever spawned: a dense block of long-lived fibers in a shard's table
// must not make every later lap of its cursor add a chunk (that grew the
// table to about a million slots in this test; the bound is about 13,000).
TEST_CASE("the registry's tables grow with the live fibers, not with the spawns") {
  goro_test::run_in_goro(1, [] {
    const std::size_t parked_n = 5'000, batch = 100;
    goro::wait_group gate, parked;
    gate.add(1);
    parked.add(static_cast<std::int64_t>(parked_n));
    for (std::size_t i = 0; i < parked_n; ++i)
      goro::spawn([&] {
        parked.done();
        gate.wait();
      });
    parked.wait();
    const long batches = goro_test::scaled(10'000, 1'000);
    for (long b = 0; b < batches; ++b) {
      goro::wait_group wg;
      wg.add(static_cast<std::int64_t>(batch));
      for (std::size_t i = 0; i < batch; ++i) goro::spawn([&wg] { wg.done(); });
      wg.wait();
    }
    // Two shards (the worker's; the foreign one holds the main fiber): the
    // worker's grows only while it has fewer than 2 x live + one chunk
    // (1,024) slots, the foreign one has its first chunk.
    const std::size_t peak_live = 1 + parked_n + batch;
    const std::size_t slots = goro::runtime_metrics().registry_slots;
    INFO("registry slots " << slots);
    CHECK(slots >= peak_live);
    CHECK(slots <= 2 * peak_live + 3 * 1024);
    gate.done();
  });
}

TEST_CASE("list_fibers shows a parked fiber's name, spawn site, state and wait reason") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::wait_group gate, finished;
    gate.add(1);
    finished.add(1);
    auto body = [&] {
      gate.wait();
      finished.done();
    };
    goro::spawn({.name = "diag-waiter"}, body); const std::uint32_t spawn_line = __LINE__;

    auto info = wait_until_parked("diag-waiter", goro::wait_reason::wait_group);
    REQUIRE(info);
    CHECK(info->id != 0);
    CHECK(info->id != goro::this_fiber::id());
    CHECK(ends_with(info->file, "diagnostics_test.cpp"));
    CHECK(info->line == spawn_line);
    CHECK_FALSE(info->function.empty());
    CHECK(info->state == goro::fiber_state::waiting);
    CHECK(info->reason == goro::wait_reason::wait_group);
    CHECK(goro::to_string(info->reason) == "sync.WaitGroup.Wait");
    CHECK(goro::to_string(info->state) == "waiting");
    CHECK(info->stack_size > 0);
    CHECK_FALSE(info->is_main);

    // The caller is listed too: the main fiber, running.
    auto all = goro::list_fibers();
    auto me = std::find_if(all.begin(), all.end(),
                           [](const goro::fiber_info& f) { return f.id == goro::this_fiber::id(); });
    REQUIRE(me != all.end());
    CHECK(me->is_main);
    CHECK(me->name == "main");
    CHECK(me->state == goro::fiber_state::running);
    CHECK(me->reason == goro::wait_reason::none);

    // waiting_for grows while it stays parked (coarse clock: allow its step).
    auto first = info->waiting_for;
    CHECK(first >= 0ns);
    CHECK(goro_test::eventually([&] {
      auto now = find_fiber("diag-waiter");
      return now && now->state == goro::fiber_state::waiting && now->waiting_for >= first + 30ms;
    }));
    auto later = find_fiber("diag-waiter");
    REQUIRE(later);
    CHECK(later->waiting_for < 60s);
    CHECK(later->id == info->id);

    gate.done();
    finished.wait();
  });
}

TEST_CASE("list_fibers shows sleeping and mutex-blocked fibers with their reasons") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    std::atomic<bool> stop{false};
    goro::mutex mu;
    goro::wait_group finished;
    finished.add(2);
    goro::spawn({.name = "diag-sleeper"}, [&] {
      while (!stop.load()) goro::sleep_for(2ms);
      finished.done();
    });
    mu.lock();
    goro::spawn({.name = "diag-locker"}, [&] {
      mu.lock();
      mu.unlock();
      finished.done();
    });

    auto sleeper = wait_until_parked("diag-sleeper", goro::wait_reason::sleep);
    REQUIRE(sleeper);
    CHECK(goro::to_string(sleeper->reason) == "sleep");

    auto locker = wait_until_parked("diag-locker", goro::wait_reason::mutex_lock);
    REQUIRE(locker);
    CHECK(goro::to_string(locker->reason) == "sync.Mutex.Lock");

    mu.unlock();
    stop = true;
    finished.wait();
  });
}

TEST_CASE("dump_fibers names each fiber, its wait reason and its spawn site") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::wait_group gate, finished;
    gate.add(1);
    finished.add(1);
    goro::spawn({.name = "dumped-fiber"}, [&] {
      gate.wait();
      finished.done();
    });
    REQUIRE(wait_until_parked("dumped-fiber", goro::wait_reason::wait_group));

    std::ostringstream out;
    goro::dump_fibers(out);
    std::string dump = out.str();
    INFO(dump);
    CHECK(contains(dump, "\"dumped-fiber\""));
    CHECK(contains(dump, "sync.WaitGroup.Wait"));
    CHECK(contains(dump, "diagnostics_test.cpp"));
    CHECK(contains(dump, "\"main\""));
    CHECK(contains(dump, "(main)"));
    CHECK(contains(dump, "[waiting: sync.WaitGroup.Wait"));

    gate.done();
    finished.wait();
    CHECK(goro_test::eventually([] { return goro::live_fibers() == 1; }));
    std::ostringstream after;
    goro::dump_fibers(after);
    CHECK_FALSE(contains(after.str(), "dumped-fiber"));
  });
  std::ostringstream outside;
  goro::dump_fibers(outside);
  CHECK(outside.str().empty());
}

TEST_CASE("runtime_metrics counters move with the work done") {
  unsigned workers = GORO_WORKERS();
  goro::metrics idle = goro::runtime_metrics();
  CHECK(idle.workers == 0);
  CHECK(idle.live_fibers == 0);
  CHECK(idle.pending_timers == 0);

  goro_test::run_in_goro(workers, [workers] {
    goro::metrics start = goro::runtime_metrics();
    CHECK(start.workers == workers);
    CHECK(start.live_fibers == 1);
    CHECK(start.fibers_spawned >= 1);  // the main fiber
    CHECK(start.stack_slots >= 1);

    const long n = goro_test::scaled(200, 20);
    goro::wait_group wg;
    wg.add(n);
    for (long i = 0; i < n; ++i)
      goro::spawn([&] {
        goro::yield();
        wg.done();
      });
    wg.wait();
    goro::metrics after = goro::runtime_metrics();
    CHECK(after.fibers_spawned == start.fibers_spawned + static_cast<std::uint64_t>(n));
    // Each fiber ran at least twice (first slice, after its yield).
    CHECK(after.context_switches >= start.context_switches + 2 * static_cast<std::uint64_t>(n));

    // A sleeping fiber's timer is pending while it sleeps, and gone after.
    CHECK(after.pending_timers == 0);
    goro::wait_group slept;
    slept.add(1);
    goro::spawn({.name = "metrics-sleeper"}, [&] {
      goro::sleep_for(300ms);
      slept.done();
    });
    CHECK(goro_test::eventually([] { return goro::runtime_metrics().pending_timers == 1; }));
    slept.wait();
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });
  CHECK(goro::runtime_metrics().workers == 0);
}
