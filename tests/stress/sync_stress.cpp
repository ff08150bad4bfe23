// SPDX-License-Identifier: MIT
// Randomised mix of mutex, condition_variable, wait_group, yield and short sleeps across fibers and plain threads.
#include "goro_test.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Shared state of one scenario. Every plain (non-atomic) field is guarded by
// the mutex named next to it; the atomics are the expected totals.
struct world {
  static constexpr int shards = 4;
  static constexpr std::size_t capacity = 16;

  // (1) Counters, one per shard, each under its own mutex.
  std::array<goro::mutex, shards> shard_mu;
  std::array<long, shards> counter{};          // under shard_mu[i]
  std::array<std::atomic<long>, shards> expected{};
  std::atomic<long> overlaps{0};
  std::array<std::atomic<int>, shards> inside{};

  // (2) A bounded queue: producers are the actors, consumers are fibers.
  goro::mutex q_mu;
  goro::condition_variable not_empty, not_full;
  std::deque<long> queue;  // under q_mu
  bool closed = false;     // under q_mu
  std::vector<int> seen;   // under q_mu: deliveries per item id
  std::atomic<long> produced{0};
  std::atomic<long> consumer_timeouts{0};

  // (3) Children: fibers spawned by the actors, joined with a wait_group.
  goro::wait_group children;
  std::atomic<long> children_spawned{0}, children_ran{0};

  // (4) Per-actor wait_group rounds: an actor forks helpers and waits. Each
  // actor reuses its own group, which outlives the runtime: destroying one
  // right after wait() is a known goro bug (see wait_group_test.cpp).
  std::unique_ptr<goro::wait_group[]> round_wg;
  std::atomic<long> rounds{0}, round_failures{0};
};

// Joins with a deadline: a lost wake-up fails the test (the fibers still
// parked are then unwound and reported) instead of hanging it.
bool join_within(goro::wait_group& wg, std::chrono::milliseconds limit = std::chrono::milliseconds(60000)) {
  if (!goro_test::eventually([&] { return wg.count() == 0; }, limit)) return false;
  wg.wait();
  return true;
}

void bump_shard(world& w, int s, bool in_fiber, bool switch_inside) {
  std::lock_guard lock(w.shard_mu[s]);
  if (w.inside[s].fetch_add(1) != 0) w.overlaps.fetch_add(1);
  long v = w.counter[s];
  if (switch_inside) {
    if (in_fiber)
      goro::yield();
    else
      std::this_thread::yield();
  }
  w.counter[s] = v + 1;
  w.inside[s].fetch_sub(1);
  w.expected[s].fetch_add(1);
}

void produce(world& w, long item) {
  std::unique_lock lock(w.q_mu);
  w.not_full.wait(lock, [&] { return w.queue.size() < world::capacity; });
  w.queue.push_back(item);
  w.produced.fetch_add(1);
  w.not_empty.notify_one();
}

void consume(world& w) {
  std::unique_lock lock(w.q_mu);
  for (;;) {
    // Timed waits now and then, so timers come and go under load.
    if (!w.not_empty.wait_for(lock, 2ms, [&] { return !w.queue.empty() || w.closed; })) {
      w.consumer_timeouts.fetch_add(1);
      continue;
    }
    if (w.queue.empty()) return;  // closed and drained
    long item = w.queue.front();
    w.queue.pop_front();
    ++w.seen[static_cast<std::size_t>(item)];
    w.not_full.notify_one();
  }
}

// One actor (a fiber or a plain thread) runs `ops` random operations.
void act(world& w, int actor, long ops, bool in_fiber) {
  std::mt19937 rng(static_cast<unsigned>(actor) * 7919u + 17u);
  auto pause = [&] {
    if (in_fiber)
      goro::yield();
    else
      std::this_thread::yield();
  };
  for (long op = 0; op < ops; ++op) {
    const long item = actor * ops + op;
    switch (rng() % 8) {
      case 0:
      case 1:
        bump_shard(w, static_cast<int>(rng() % world::shards), in_fiber, rng() % 4 == 0);
        break;
      case 2:
      case 3:
        produce(w, item);
        continue;  // this item id is used
      case 4:
        pause();
        break;
      case 5:
        goro::sleep_for(std::chrono::microseconds(rng() % 200));  // a thread sleeps, a fiber parks
        break;
      case 6: {
        // A child fiber that outlives this op; spawn() works from threads too.
        w.children.add(1);
        w.children_spawned.fetch_add(1);
        int s = static_cast<int>(rng() % world::shards);
        bool sw = rng() % 2 == 0;
        goro::spawn([&w, s, sw] {
          bump_shard(w, s, true, sw);
          w.children_ran.fetch_add(1);
          w.children.done();
        });
        break;
      }
      case 7: {
        // A short fork/join round on the actor's own wait_group.
        goro::wait_group& round = w.round_wg[actor];
        std::atomic<int> done_in_round{0};
        const int helpers = 1 + static_cast<int>(rng() % 3);
        round.add(helpers);
        for (int h = 0; h < helpers; ++h)
          goro::spawn([&] {
            goro::yield();
            done_in_round.fetch_add(1);
            round.done();
          });
        round.wait();
        if (done_in_round.load() != helpers) w.round_failures.fetch_add(1);
        w.rounds.fetch_add(1);
        break;
      }
    }
    // Not produced: account the id anyway so `seen` is indexed densely.
    std::lock_guard lock(w.q_mu);
    ++w.seen[static_cast<std::size_t>(item)];
  }
}

}  // namespace

TEST_CASE("random mutex + condvar + wait_group + yield + sleep traffic keeps exact counts") {
  unsigned workers = GORO_WORKERS();
  const int fiber_actors = static_cast<int>(goro_test::scaled(200, 16));
  const int thread_actors = 2;
  const int consumers = 4;
  const long ops = goro_test::scaled(1500, 100);
  const int actors = fiber_actors + thread_actors;

  world w;
  w.seen.assign(static_cast<std::size_t>(actors * ops), 0);
  w.round_wg = std::make_unique<goro::wait_group[]>(static_cast<std::size_t>(actors));

  goro::run_options options;
  options.workers = workers;
  // Plain threads take part: the deadlock detector must not mistake a thread
  // the OS left unscheduled for a deadlock. Lost wake-ups are caught by
  // join_within()'s deadline instead.
  options.deadlock_grace = 10s;
  goro::run(options, [&] {
    goro::wait_group acting, consuming;
    acting.add(actors);
    consuming.add(consumers);
    for (int c = 0; c < consumers; ++c)
      goro::spawn({.name = "stress-consumer"}, [&] {
        consume(w);
        consuming.done();
      });
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_actors; ++t)
      threads.emplace_back([&, t] {
        act(w, fiber_actors + t, ops, false);
        acting.done();
      });
    for (int a = 0; a < fiber_actors; ++a)
      goro::spawn({.name = "stress-actor"}, [&, a] {
        act(w, a, ops, true);
        acting.done();
      });
    REQUIRE(join_within(acting));
    {
      std::lock_guard lock(w.q_mu);
      w.closed = true;
    }
    w.not_empty.notify_all();
    REQUIRE(join_within(consuming));
    REQUIRE(join_within(w.children));
    for (auto& t : threads) t.join();
    goro::testing::expect_no_leaked_fibers();
    CHECK(goro::runtime_metrics().pending_timers == 0);
  });

  INFO("produced " << w.produced.load() << ", children " << w.children_spawned.load() << ", rounds "
                   << w.rounds.load() << ", consumer timeouts " << w.consumer_timeouts.load());
  for (int s = 0; s < world::shards; ++s) CHECK(w.counter[s] == w.expected[s].load());
  CHECK(w.overlaps.load() == 0);
  CHECK(w.queue.empty());
  // Every item id accounted exactly once: produced ones by one consumer,
  // the others by their actor.
  CHECK(std::count(w.seen.begin(), w.seen.end(), 1) == static_cast<long>(w.seen.size()));
  CHECK(w.children_ran.load() == w.children_spawned.load());
  CHECK(w.round_failures.load() == 0);
  CHECK(w.produced.load() > 0);
}
