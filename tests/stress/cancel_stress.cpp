// SPDX-License-Identifier: MIT
// Random cancel storms across a context tree while fibers and threads block in every context-aware operation; exact accounting of completed and cancelled ops.
#include "goro_test.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

enum op_kind : int {
  send_unbuffered,
  send_buffered,
  recv_unbuffered,
  recv_buffered,
  sleep,
  wait_group_wait,
  mutex_lock,
  semaphore_acquire,
  future_get,
  select_done,
  op_count
};

const char* op_names[op_count] = {"send(ctx) unbuffered", "send(ctx) buffered", "recv(ctx) unbuffered",
                                  "recv(ctx) buffered",   "sleep_for(ctx)",     "wait_group::wait(ctx)",
                                  "mutex::lock(ctx)",     "semaphore::acquire(ctx)", "future::get(ctx)",
                                  "select(on_done)"};

const goro::context_key<int> node_key;

// One node of the random context tree.
struct node {
  int parent = -1;
  goro::context ctx;
  goro::cancel_func cancel;
  bool cancellable = false;
  std::optional<clock_type::time_point> own_deadline;  // when it has one of its own (armed or not)
};

// Everything one round shares. Plain fields are guarded as noted.
struct round_state {
  std::vector<node> tree;
  std::unique_ptr<std::atomic<bool>[]> storm_cancelled;  // set before the storm cancels a node

  goro::chan<long> unbuffered{0};
  goro::chan<long> buffered{1};
  goro::chan<int> never{0};
  goro::wait_group never_done;  // count 1 for the whole round: wait(ctx) can only be cancelled
  goro::mutex mu;
  long mu_counter = 0;  // under mu
  std::atomic<int> mu_inside{0};
  goro::semaphore sem{3};
  std::atomic<long> sem_held{0};
  goro::future<long> fut;

  // Channel values: ids actor * ops + i; each sent at most once.
  std::unique_ptr<std::atomic<int>[]> sent;      // 1 when its send completed
  std::unique_ptr<std::atomic<int>[]> received;  // times it was received

  std::array<std::atomic<long>, op_count> completed{};
  std::array<std::atomic<long>, op_count> cancelled{};
  std::array<std::atomic<long>, op_count> cancelled_live{};  // cancelled, though ctx was live when the op began
  std::atomic<long> spurious_cancel{0};  // reported cancelled, yet ctx.err() is empty
  std::atomic<long> bad_outcome{0};      // a completion that cannot be (see run_op)
  std::atomic<long> mutex_overlaps{0}, semaphore_over{0};
};

// Performs one random op on a random node; counts its outcome.
void run_op(round_state& st, std::mt19937& rng, long id, bool in_fiber) {
  const node& n = st.tree[rng() % st.tree.size()];
  const goro::context& ctx = n.ctx;
  const int kind = static_cast<int>(rng() % op_count);
  const bool live_at_start = !ctx.err();
  bool was_cancelled = false;
  auto pause = [&] {
    if (in_fiber)
      goro::yield();
    else
      std::this_thread::yield();
  };
  switch (kind) {
    case send_unbuffered:
    case send_buffered: {
      auto& ch = kind == send_unbuffered ? st.unbuffered : st.buffered;
      goro::chan_op r = ch.send(ctx, id);
      if (r == goro::chan_op::ok)
        st.sent[static_cast<std::size_t>(id)].store(1);
      else if (r == goro::chan_op::canceled)
        was_cancelled = true;
      else
        st.bad_outcome.fetch_add(1);
      break;
    }
    case recv_unbuffered:
    case recv_buffered: {
      auto& ch = kind == recv_unbuffered ? st.unbuffered : st.buffered;
      auto r = ch.recv(ctx);
      if (r.status == goro::chan_op::ok)
        st.received[static_cast<std::size_t>(*r.value)].fetch_add(1);
      else if (r.status == goro::chan_op::canceled)
        was_cancelled = true;
      else
        st.bad_outcome.fetch_add(1);  // never closed during the round
      break;
    }
    case sleep: {
      auto d = std::chrono::microseconds(rng() % 3000);
      was_cancelled = static_cast<bool>(goro::this_fiber::sleep_for(ctx, d));
      break;
    }
    case wait_group_wait:
      if (st.never_done.wait(ctx))
        was_cancelled = true;
      else
        st.bad_outcome.fetch_add(1);  // the count never reaches zero during the round
      break;
    case mutex_lock:
      if (st.mu.lock(ctx)) {
        was_cancelled = true;
      } else {
        if (st.mu_inside.fetch_add(1) != 0) st.mutex_overlaps.fetch_add(1);
        long v = st.mu_counter;
        pause();
        st.mu_counter = v + 1;
        st.mu_inside.fetch_sub(1);
        st.mu.unlock();
      }
      break;
    case semaphore_acquire: {
      std::int64_t units = 1 + static_cast<std::int64_t>(rng() % 2);
      if (st.sem.acquire(ctx, units)) {
        was_cancelled = true;
      } else {
        if (st.sem_held.fetch_add(units) + units > 3) st.semaphore_over.fetch_add(1);
        pause();
        st.sem_held.fetch_sub(units);
        st.sem.release(units);
      }
      break;
    }
    case future_get: {
      auto r = st.fut.get(ctx);
      if (r.ok()) {
        if (r.value() != 777) st.bad_outcome.fetch_add(1);
      } else {
        was_cancelled = true;
      }
      break;
    }
    case select_done: {
      int taken = goro::select(goro::on_recv(st.never), goro::on_done(ctx),
                               goro::on_timeout(std::chrono::microseconds(rng() % 3000)));
      if (taken == 1)
        was_cancelled = true;
      else if (taken != 2)
        st.bad_outcome.fetch_add(1);
      break;
    }
    default: break;
  }
  if (was_cancelled) {
    std::error_code e = ctx.err();
    if (e != goro::context_errc::canceled && e != goro::context_errc::deadline_exceeded)
      st.spurious_cancel.fetch_add(1);
    st.cancelled[static_cast<std::size_t>(kind)].fetch_add(1);
    if (live_at_start) st.cancelled_live[static_cast<std::size_t>(kind)].fetch_add(1);
  } else {
    st.completed[static_cast<std::size_t>(kind)].fetch_add(1);
  }
}

// Builds a random tree of `count` nodes under a with_cancel root: cancel
// nodes, value nodes (not cancellable), deadlines that expire during the
// round and deadlines an hour away.
void build_tree(round_state& st, std::mt19937& rng, int count) {
  st.tree.resize(static_cast<std::size_t>(count));
  st.storm_cancelled = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(count));
  auto [root, cancel_root] = goro::with_cancel(goro::background());
  st.tree[0].ctx = root;
  st.tree[0].cancel = cancel_root;
  st.tree[0].cancellable = true;
  const auto now = clock_type::now();
  for (int i = 1; i < count; ++i) {
    node& n = st.tree[static_cast<std::size_t>(i)];
    n.parent = static_cast<int>(rng() % static_cast<unsigned>(i));
    const goro::context& p = st.tree[static_cast<std::size_t>(n.parent)].ctx;
    switch (rng() % 6) {
      case 0: n.ctx = goro::with_value(p, node_key, i); break;
      case 1:
        n.own_deadline = now + std::chrono::milliseconds(2 + rng() % 30);
        std::tie(n.ctx, n.cancel) = goro::with_deadline(p, *n.own_deadline);
        n.cancellable = true;
        break;
      case 2:
        n.own_deadline = now + 1h;
        std::tie(n.ctx, n.cancel) = goro::with_deadline(p, *n.own_deadline);
        n.cancellable = true;
        break;
      default:
        std::tie(n.ctx, n.cancel) = goro::with_cancel(p);
        n.cancellable = true;
    }
  }
}

// Cancels `count` random non-root cancellable nodes with short pauses.
void storm(round_state& st, std::mt19937& rng, int count, bool in_fiber) {
  for (int k = 0; k < count; ++k) {
    std::size_t i = 1 + rng() % (st.tree.size() - 1);
    if (!st.tree[i].cancellable) continue;
    st.storm_cancelled[i].store(true);
    st.tree[i].cancel();
    auto d = std::chrono::microseconds(rng() % 2000);
    if (in_fiber)
      goro::sleep_for(d);
    else
      std::this_thread::sleep_for(d);
  }
}

// Checks the tree once the storm is over: describes every violation.
std::string tree_violations(const round_state& st, bool downward) {
  std::ostringstream out;
  for (std::size_t i = 1; i < st.tree.size(); ++i) {
    const node& n = st.tree[i];
    std::error_code e = n.ctx.err();
    std::error_code pe = st.tree[static_cast<std::size_t>(n.parent)].ctx.err();
    // A cancelled parent has cancelled every child (once in-flight cancels end).
    if (downward && pe && !e) out << "node " << i << " not cancelled under cancelled parent " << n.parent << "\n";
    // Each error has a cause up the chain: a storm cancel, or a deadline passed.
    if (e == goro::context_errc::canceled) {
      bool cause = false;
      for (int a = static_cast<int>(i); a >= 0 && !cause; a = st.tree[static_cast<std::size_t>(a)].parent)
        cause = st.storm_cancelled[static_cast<std::size_t>(a)].load();
      if (!cause) out << "node " << i << " canceled with no cancelled ancestor\n";
    } else if (e == goro::context_errc::deadline_exceeded) {
      const auto now = clock_type::now();  // after reading e: its deadline had passed by then
      bool cause = false;
      for (int a = static_cast<int>(i); a >= 0 && !cause; a = st.tree[static_cast<std::size_t>(a)].parent) {
        const auto& d = st.tree[static_cast<std::size_t>(a)].own_deadline;
        cause = d && *d <= now;
      }
      if (!cause) out << "node " << i << " deadline_exceeded before any deadline up its chain\n";
    } else if (e) {
      out << "node " << i << " has a foreign error " << e.message() << "\n";
    }
  }
  return out.str();
}

}  // namespace

TEST_CASE("cancel storms over a context tree end every blocked op exactly once, with nothing lost or left") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(20, 8);
  const int fiber_actors = static_cast<int>(goro_test::scaled(48, 16));
  const int thread_actors = 2;
  const int actors = fiber_actors + thread_actors;
  static constexpr long ops = 25;
  const int nodes = 40;

  goro::run_options options;
  options.workers = workers;
  options.starvation_threshold = 1000ms;
  // Plain threads take part: a descheduled thread on a loaded machine is not
  // a deadlock (a real one still fails, after 10 s).
  options.deadlock_grace = 10s;
  // Over all rounds: each kind of op must have been both completed and
  // cancelled (else the storm or the partners are not doing their job).
  std::array<long, op_count> all_completed{}, all_cancelled{}, all_cancelled_live{};
  goro::run(options, [&] {
    for (long round = 0; round < rounds; ++round) {
      INFO("round " << round << " with " << workers << " workers");
      round_state st;
      std::mt19937 rng(static_cast<unsigned>(round * 7919 + workers));
      build_tree(st, rng, nodes);
      const std::size_t ids = static_cast<std::size_t>(actors * ops);
      st.sent = std::make_unique<std::atomic<int>[]>(ids);
      st.received = std::make_unique<std::atomic<int>[]>(ids);
      st.never_done.add(1);
      st.fut = goro::async([delay = std::chrono::milliseconds(5 + rng() % 20)] {
        goro::sleep_for(delay);
        return 777L;
      });
      // A hog holds the mutex and the whole semaphore until the storm is
      // over, so those ops block (and get cancelled) during it.
      goro::chan<int> hog_ready{1}, hog_release{0}, hog_done{1};
      goro::spawn({.name = "hog"}, [&st, hog_ready, hog_release, hog_done] {
        st.mu.lock();
        st.sem.acquire(3);
        hog_ready.send(1);
        hog_release.recv();
        st.sem.release(3);
        st.mu.unlock();
        hog_done.send(1);
      });
      hog_ready.recv();

      // Actors: each runs `ops` random ops on random nodes.
      goro::wait_group acting;
      acting.add(fiber_actors);
      for (int a = 0; a < fiber_actors; ++a)
        goro::spawn({.name = "cancel-actor"}, [&st, &acting, a, round] {
          std::mt19937 r(static_cast<unsigned>(round * 100003 + a));
          for (long i = 0; i < ops; ++i) run_op(st, r, a * ops + i, true);
          acting.done();
        });
      goro::chan<int> threads_done{thread_actors};
      std::vector<std::thread> threads;
      for (int t = 0; t < thread_actors; ++t)
        threads.emplace_back([&st, threads_done, a = fiber_actors + t, round] {
          std::mt19937 r(static_cast<unsigned>(round * 100003 + a));
          for (long i = 0; i < ops; ++i) run_op(st, r, a * ops + i, false);
          threads_done.send(1);
        });

      // The storm: a fiber and a plain thread cancel random nodes.
      goro::chan<int> storm_done{2};
      goro::spawn({.name = "storm"}, [&st, storm_done, count = nodes / 4, seed = rng()] {
        std::mt19937 r(seed);
        storm(st, r, count, true);
        storm_done.send(1);
      });
      std::thread storm_thread([&st, storm_done, count = nodes / 4, seed = rng()] {
        std::mt19937 r(seed);
        storm(st, r, count, false);
        storm_done.send(1);
      });
      storm_done.recv();
      storm_done.recv();
      storm_thread.join();
      hog_release.close();
      hog_done.recv();

      // Between the storm and the end: errors have causes, and a cancelled
      // parent's children are cancelled (deadline timers may still be
      // propagating, hence eventually for the downward rule).
      CHECK(tree_violations(st, false).empty());
      std::string violations;
      bool settled = goro_test::eventually([&] {
        violations = tree_violations(st, true);
        return violations.empty();
      });
      INFO(violations);
      CHECK(settled);

      // End of round: the root's cancel ends every op still blocked.
      st.tree[0].cancel();
      for (auto& n : st.tree) CHECK(n.ctx.err());
      acting.wait();
      for (int t = 0; t < thread_actors; ++t) threads_done.recv();
      for (auto& t : threads) t.join();

      // Values left in the buffer were sent but not received: drain them.
      while (true) {
        auto r = st.buffered.try_recv();
        if (r.status != goro::chan_op::ok) break;
        st.received[static_cast<std::size_t>(*r.value)].fetch_add(1);
      }

      long total = 0, lost = 0, duplicated = 0, phantom = 0;
      for (int k = 0; k < op_count; ++k) {
        total += st.completed[static_cast<std::size_t>(k)].load() + st.cancelled[static_cast<std::size_t>(k)].load();
        all_completed[static_cast<std::size_t>(k)] += st.completed[static_cast<std::size_t>(k)].load();
        all_cancelled[static_cast<std::size_t>(k)] += st.cancelled[static_cast<std::size_t>(k)].load();
        all_cancelled_live[static_cast<std::size_t>(k)] += st.cancelled_live[static_cast<std::size_t>(k)].load();
        UNSCOPED_INFO(op_names[k] << ": " << st.completed[static_cast<std::size_t>(k)].load() << " completed, "
                                  << st.cancelled[static_cast<std::size_t>(k)].load() << " cancelled");
      }
      for (std::size_t id = 0; id < ids; ++id) {
        int s = st.sent[id].load(), r = st.received[id].load();
        if (s == 1 && r == 0) ++lost;
        if (r > 1) ++duplicated;
        if (s == 0 && r > 0) ++phantom;
      }
      CHECK(total == actors * ops);  // every op reported exactly one outcome
      CHECK(lost == 0);
      CHECK(duplicated == 0);
      CHECK(phantom == 0);
      CHECK(st.spurious_cancel.load() == 0);
      CHECK(st.bad_outcome.load() == 0);
      CHECK(st.completed[wait_group_wait].load() == 0);
      CHECK(st.mutex_overlaps.load() == 0);
      CHECK(st.semaphore_over.load() == 0);
      {
        std::lock_guard lock(st.mu);
        CHECK(st.mu_counter == st.completed[mutex_lock].load());
      }
      CHECK(st.sem.in_use() == 0);
      CHECK(st.fut.get() == 777);

      st.never_done.done();
      st.tree.clear();  // releases every context: no deadline timer may stay behind
      CHECK(goro::runtime_metrics().pending_timers == 0);
      goro::testing::expect_no_leaked_fibers();
    }
  });
  for (int k = 0; k < op_count; ++k) {
    INFO(op_names[k] << ": " << all_completed[static_cast<std::size_t>(k)] << " completed, "
                     << all_cancelled[static_cast<std::size_t>(k)] << " cancelled ("
                     << all_cancelled_live[static_cast<std::size_t>(k)] << " of them while under way) over " << rounds
                     << " rounds");
    if (k != wait_group_wait) CHECK(all_completed[static_cast<std::size_t>(k)] > 0);
    CHECK(all_cancelled_live[static_cast<std::size_t>(k)] > 0);
  }
}

namespace {

// Runs fn in a child process and returns its wait status: a crash there is a
// failed CHECK here instead of the end of the test program.
int wait_status_of_child(const std::function<void()>& fn) {
#if defined(GORO_SANITIZE_BUILD)
  // Sanitizers dislike fork from a process that has run threads: run
  // in-process; a regression then fails the whole executable.
  fn();
  return 0;
#endif
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGABRT, SIG_DFL);
    try {
      fn();
    } catch (...) {
      std::_Exit(2);
    }
    std::fflush(nullptr);
    std::_Exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

// Regression test for a fixed bug. It was: detail::block_on_until(), behind
// wait_group::wait(ctx), mutex::lock(ctx), semaphore::acquire(ctx, n) and
// future::get(ctx), queues a waiter on the context's done channel under the
// channel's lock and releases that lock *before* the fiber parks (only the
// primitive's own lock is released after the switch). A cancel on another
// thread in that window claims the wait and readies the fiber while it is
// still running, so another worker resumes it on a stack still in use.
// select() (and so chan send/recv(ctx) and sleep_for(ctx)) holds every
// channel lock until after the switch and is not affected. Fix: release
// done->lock after the switch too (in arm_and_unlock), like select does.
// Runs in a child process: the failure is an abort.
TEST_CASE("a cancel from a plain thread racing a fiber's park in a context-aware wait") {
  const long rounds = goro_test::scaled(100'000, 20'000);
  int status = wait_status_of_child([rounds] {
    goro::run_options o;
    o.workers = 4;
    o.detect_deadlock = false;  // the canceller thread is invisible to the detector
    goro::run(o, [rounds] {
      // The canceller thread gets its own copy of each cancel_func (the copy
      // keeps the context alive while its cancel runs) and clears `pending`
      // once the call has returned.
      std::atomic<goro::cancel_func*> pending{nullptr};
      std::atomic<bool> stop{false};
      std::thread canceller([&] {
        while (!stop.load()) {
          if (goro::cancel_func* c = pending.load()) {
            (*c)();
            delete c;
            pending.store(nullptr);
          }
        }
      });
      goro::wait_group wg;
      wg.add(1);  // never reaches zero here: wait(ctx) can only be cancelled
      goro::mutex mu;
      mu.lock();
      goro::semaphore sem(1);
      sem.acquire();
      goro::chan<int> gate{0};
      goro::future<int> fut = goro::async([gate] { return gate.recv().value_or(0); });
      long wrong = 0;
      for (long r = 0; r < rounds; ++r) {
        auto [ctx, cancel] = goro::with_cancel(goro::background());
        pending.store(new goro::cancel_func(cancel));
        std::error_code e;
        switch (r % 4) {
          case 0: e = wg.wait(ctx); break;
          case 1: e = mu.lock(ctx); break;
          case 2: e = sem.acquire(ctx, 1); break;
          default: e = fut.get(ctx).ok() ? std::error_code{} : ctx.err(); break;
        }
        if (e != goro::context_errc::canceled) ++wrong;
        while (pending.load() != nullptr) goro::yield();
      }
      stop = true;
      canceller.join();
      wg.done();
      mu.unlock();
      sem.release();
      gate.close();
      fut.get();
      if (wrong != 0) std::_Exit(5);
    });
  });
  INFO("child wait status " << status << (WIFSIGNALED(status) ? " (killed by a signal)" : ""));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
