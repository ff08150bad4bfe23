// SPDX-License-Identifier: MIT
// goro::context: cancellation trees, deadlines on runtime timers, values, stop_token interop, detaching children, and every context-aware blocking operation.
// The one sleep, this_fiber::sleep_for(ctx, 1h), is among the context-aware
// blocking operations under test (only cancellation may end it); no test
// sleeps to let things settle.
#include "goro_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

using goro_test::parked;
using goro_test::until_parked;

std::size_t pending_timers() { return goro::runtime_metrics().pending_timers; }

// Resident set size of this process in bytes.
long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// White-box: how many cancellable children are attached to ctx's cancellable
// node (a cancelled or destroyed child must have detached itself).
std::size_t attached_children(const goro::context& ctx) {
  const auto& s = goro::context_access::state(ctx);
  goro::detail::context_state* c = s ? s->canceller : nullptr;
  if (c == nullptr) return 0;
  goro::detail::spin_guard lock(c->mu);
  std::size_t n = 0;
  for (goro::detail::context_state* p = c->child_head; p != nullptr; p = p->sibling_next) ++n;
  return n;
}

bool done_is_closed(const goro::context& ctx) {
  return !ctx.done().is_nil() && ctx.done().try_recv().status == goro::chan_op::closed;
}

// Where a cancel comes from: another fiber, a plain OS thread, or the
// context's own deadline.
enum class source { fiber, thread, deadline };

const char* to_cstr(source s) {
  switch (s) {
    case source::fiber: return "fiber";
    case source::thread: return "plain thread";
    case source::deadline: return "deadline";
  }
  return "?";
}

// Calls cancel() from another fiber or from a plain thread, and returns once
// it has returned.
void cancel_from(source s, const goro::cancel_func& cancel) {
  if (s == source::thread) {
    std::thread t([&] { cancel(); });
    t.join();
  } else {
    goro::chan<int> returned{1};
    goro::spawn({.name = "canceller"}, [&cancel, returned] {
      cancel();
      returned.send(1);
    });
    returned.recv();
  }
}

// Runs fn in a child process and returns its wait status, so a test can
// observe a crash (e.g. a stack overflow, which aborts) as a failed CHECK
// instead of losing the whole test executable.
int wait_status_of_child(const std::function<void()>& fn) {
#if defined(GORO_SANITIZE_BUILD)
  // Sanitizers take over fatal signals (and TSan does not like fork): run
  // in-process instead. A regression then fails the whole executable, which
  // ctest reports just as well.
  fn();
  return 0;
#endif
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Catch2 replaces the fatal-signal handlers around every test case, so
    // goro's stack-overflow reporter (installed once per process) is gone by
    // now; put it back in the child so an overflow is reported and aborts
    // instead of running Catch's handler (which allocates) on a broken fiber.
    struct sigaction action {};
    action.sa_sigaction = &goro::detail::goro_fault_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, nullptr);
    ::sigaction(SIGBUS, &action, nullptr);
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

const goro::context_key<std::string> request_id_key;
const goro::context_key<int> user_key;
const goro::context_key<int> other_int_key;  // same type, different key

}  // namespace

// ---------------------------------------------------------------------------
// background, with_cancel, err, done

TEST_CASE("background is never cancelled and has no deadline, values or done channel") {
  for (const goro::context& ctx : {goro::background(), goro::context{}}) {
    CHECK_FALSE(ctx.err());
    CHECK_FALSE(ctx.is_cancelled());
    CHECK_FALSE(ctx.deadline().has_value());
    CHECK(ctx.done().is_nil());
    CHECK(ctx.value(request_id_key) == nullptr);
    CHECK_FALSE(ctx.stop_token().stop_possible());
  }
  goro_test::run_in_goro(1, [] {
    // A nil done channel is never ready in select.
    bool defaulted = false;
    int taken = goro::select(goro::on_done(goro::background(), [] { FAIL("background was cancelled"); }),
                             goro::on_default([&] { defaulted = true; }));
    CHECK(taken == 1);
    CHECK(defaulted);
  });
}

TEST_CASE("with_cancel: err is empty and done open until cancel, then canceled and closed") {
  auto [ctx, cancel] = goro::with_cancel(goro::background());
  CHECK_FALSE(ctx.err());
  CHECK_FALSE(ctx.done().is_nil());
  CHECK(ctx.done().try_recv().status == goro::chan_op::would_block);
  cancel();
  std::error_code e = ctx.err();
  CHECK(e == goro::context_errc::canceled);
  CHECK(e != goro::context_errc::deadline_exceeded);
  CHECK(e.category() == goro::context_category());
  CHECK(std::string(e.category().name()) == "goro.context");
  CHECK(e.message() == "context canceled");
  CHECK(ctx.is_cancelled());
  CHECK(done_is_closed(ctx));
  // Idempotent: the error stays the first one.
  cancel();
  cancel();
  CHECK(ctx.err() == goro::context_errc::canceled);
}

TEST_CASE("destroying a cancel_func does not cancel its context") {
  goro::context ctx;
  {
    auto [c, f] = goro::with_cancel(goro::background());
    ctx = c;
  }
  CHECK_FALSE(ctx.err());
  CHECK(ctx.done().try_recv().status == goro::chan_op::would_block);
}

TEST_CASE("done() in select and on_done wake a parked fiber when the context is cancelled") {
  unsigned workers = GORO_WORKERS();
  source from = GENERATE(source::fiber, source::thread);
  INFO("cancel from a " << to_cstr(from));
  goro_test::run_in_goro(workers, [&] {
    goro::context ctx;
    goro::cancel_func cancel;
    std::tie(ctx, cancel) = goro::with_cancel(goro::background());
    goro::chan<int> never{0};
    goro::chan<int> result{1};
    goro::spawn({.name = "on-done"}, [&, result] {
      bool ran = false;
      int taken = goro::select(goro::on_recv(never), goro::on_done(ctx, [&] { ran = true; }));
      result.send(ran ? taken : -1);
    });
    REQUIRE(until_parked("on-done", goro::wait_reason::select));
    CHECK(result.try_recv().status == goro::chan_op::would_block);
    cancel_from(from, cancel);
    CHECK(result.recv() == 1);
    // A ready channel beats a context that is not cancelled.
    auto [live, live_cancel] = goro::with_cancel(goro::background());
    goro::chan<int> ready{1};
    ready.send(5);
    int got = 0;
    CHECK(goro::select(goro::on_recv(ready, [&](std::optional<int> v) { got = v.value_or(0); }), goro::on_done(live)) ==
          0);
    CHECK(got == 5);
    live_cancel();
  });
}

// ---------------------------------------------------------------------------
// with_value

TEST_CASE("with_value: value(key) finds the nearest value up the chain, by key identity") {
  goro_test::run_in_goro(1, [] {
    goro::context root = goro::with_value(goro::background(), request_id_key, "req-1");
    root = goro::with_value(root, user_key, 7);
    auto [mid, cancel_mid] = goro::with_cancel(root);
    goro::context shadow = goro::with_value(mid, request_id_key, std::string("req-2"));
    auto [leaf, cancel_leaf] = goro::with_timeout(goro::with_value(shadow, other_int_key, 99), 1h);

    REQUIRE(root.value(request_id_key) != nullptr);
    CHECK(*root.value(request_id_key) == "req-1");
    CHECK(*root.value<int>(user_key) == 7);
    CHECK(root.value(other_int_key) == nullptr);

    // Through a cancellable node and a shadowing value.
    CHECK(*mid.value(request_id_key) == "req-1");
    CHECK(*shadow.value(request_id_key) == "req-2");
    CHECK(*leaf.value(request_id_key) == "req-2");
    CHECK(*leaf.value(user_key) == 7);
    CHECK(*leaf.value(other_int_key) == 99);
    CHECK(mid.value(other_int_key) == nullptr);

    // A value node is not cancellable itself: it reports its nearest
    // cancellable ancestor, and cancelling that reaches through it.
    CHECK(shadow.done() == mid.done());
    cancel_mid();
    CHECK(shadow.err() == goro::context_errc::canceled);
    CHECK(leaf.err() == goro::context_errc::canceled);
    CHECK(*leaf.value(request_id_key) == "req-2");  // values survive cancellation
    cancel_leaf();
  });
}

// ---------------------------------------------------------------------------
// deadlines and timers

TEST_CASE("a context whose deadline passes cancels itself with deadline_exceeded through a runtime timer") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    REQUIRE(pending_timers() == 0);
    const auto start = clock_type::now();
    auto [ctx, cancel] = goro::with_timeout(goro::background(), 100ms);
    CHECK(pending_timers() == 1);
    REQUIRE(ctx.deadline().has_value());
    CHECK(*ctx.deadline() >= start + 100ms);
    CHECK(*ctx.deadline() <= clock_type::now() + 100ms);
    CHECK_FALSE(ctx.err());
    CHECK_FALSE(ctx.done().recv().has_value());  // parks until the deadline closes done
    const auto waited = clock_type::now() - start;
    CHECK(waited >= 100ms);
    CHECK(waited < 5s);
    CHECK(ctx.err() == goro::context_errc::deadline_exceeded);
    CHECK(ctx.err().message() == "context deadline exceeded");
    CHECK(pending_timers() == 0);  // the fired timer left the heap before firing
    cancel();                      // after the fact: changes nothing
    CHECK(ctx.err() == goro::context_errc::deadline_exceeded);
  });
}

TEST_CASE("with_timeout and with_deadline also work from a plain thread while a runtime runs") {
  goro_test::run_in_goro(2, [] {
    goro::chan<std::error_code> seen{1};
    std::thread t([seen] {
      auto [ctx, cancel] = goro::with_timeout(goro::background(), 30ms);
      ctx.done().recv();  // blocks the thread until the runtime's timer fires
      seen.send(ctx.err());
      cancel();
    });
    CHECK(seen.recv() == goro::context_errc::deadline_exceeded);
    t.join();
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("a deadline already past cancels at once and arms no timer") {
  goro_test::run_in_goro(1, [] {
    auto [ctx, cancel] = goro::with_deadline(goro::background(), clock_type::now() - 1s);
    CHECK(ctx.err() == goro::context_errc::deadline_exceeded);
    CHECK(done_is_closed(ctx));
    CHECK(pending_timers() == 0);
    auto [zero, cancel_zero] = goro::with_timeout(goro::background(), 0ms);
    CHECK(zero.err() == goro::context_errc::deadline_exceeded);
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("cancelling or destroying a context with a deadline removes its timer at once") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    {
      auto [ctx, cancel] = goro::with_timeout(goro::background(), 1h);
      CHECK(pending_timers() == 1);
      cancel();
      CHECK(pending_timers() == 0);
      CHECK(ctx.err() == goro::context_errc::canceled);
    }
    {
      auto [ctx, cancel] = goro::with_timeout(goro::background(), 1h);
      CHECK(pending_timers() == 1);
    }  // released without cancel
    CHECK(pending_timers() == 0);
    {
      // A parent's cancel removes the timers of its descendants.
      auto [parent, cancel_parent] = goro::with_cancel(goro::background());
      auto [a, cancel_a] = goro::with_timeout(parent, 1h);
      auto [b, cancel_b] = goro::with_timeout(goro::with_value(a, user_key, 1), 30min);
      CHECK(pending_timers() == 2);
      cancel_parent();
      CHECK(pending_timers() == 0);
      CHECK(b.err() == goro::context_errc::canceled);
    }
    {
      // Created from a plain thread (armed on a worker's heap), released there.
      std::size_t armed = 0, after_cancel = 0;
      std::thread t([&] {
        auto [ctx, cancel] = goro::with_timeout(goro::background(), 1h);
        armed = pending_timers();
        cancel();
        after_cancel = pending_timers();
      });
      t.join();
      CHECK(armed == 1);
      CHECK(after_cancel == 0);
    }
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("deadline() is the earliest deadline up the chain") {
  goro_test::run_in_goro(2, [] {
    const auto now = clock_type::now();
    auto [parent, cancel_parent] = goro::with_deadline(goro::background(), now + 1h);
    CHECK(parent.deadline() == now + 1h);
    // Later than the parent's: the parent's is the effective one, and no
    // second timer is needed.
    auto [later, cancel_later] = goro::with_deadline(parent, now + 2h);
    CHECK(later.deadline() == now + 1h);
    CHECK(pending_timers() == 1);
    // Earlier: its own.
    auto [earlier, cancel_earlier] = goro::with_deadline(later, now + 30min);
    CHECK(earlier.deadline() == now + 30min);
    CHECK(pending_timers() == 2);
    // Value and cancel nodes inherit.
    goro::context valued = goro::with_value(earlier, user_key, 3);
    CHECK(valued.deadline() == now + 30min);
    auto [plain, cancel_plain] = goro::with_cancel(valued);
    CHECK(plain.deadline() == now + 30min);
    CHECK_FALSE(goro::with_cancel(goro::background()).first.deadline().has_value());
    cancel_parent();
    CHECK(pending_timers() == 0);
    CHECK(plain.err() == goro::context_errc::canceled);
  });
}

TEST_CASE("a child whose own deadline is later ends with deadline_exceeded at its parent's deadline") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    const auto start = clock_type::now();
    auto [parent, cancel_parent] = goro::with_timeout(goro::background(), 50ms);
    auto [child, cancel_child] = goro::with_timeout(parent, 1h);
    auto [grandchild, cancel_grandchild] = goro::with_cancel(goro::with_value(child, user_key, 1));
    grandchild.done().recv();
    CHECK(clock_type::now() - start >= 50ms);
    CHECK(parent.err() == goro::context_errc::deadline_exceeded);
    CHECK(child.err() == goro::context_errc::deadline_exceeded);
    CHECK(grandchild.err() == goro::context_errc::deadline_exceeded);
    CHECK(pending_timers() == 0);
  });
}

// ---------------------------------------------------------------------------
// Propagation: deep, wide, random trees

TEST_CASE("cancelling the root of a deep chain cancels every level") {
  unsigned workers = GORO_WORKERS();
  // cancel() recurses once per level: it did once; see the deep-chain regression tests below for
  // what a default 64 KiB fiber stack does with deeper chains. This test is
  // about propagation, so it runs on a 1 MiB stack.
  const int depth = 256;
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> finished{1};
    goro::spawn({.name = "deep", .stack_size = 1024 * 1024}, [&, finished] {
      auto [root, cancel_root] = goro::with_cancel(goro::background());
      std::vector<goro::context> chain{root};
      std::vector<goro::cancel_func> cancels;
      for (int i = 0; i < depth; ++i) {
        goro::context parent = chain.back();
        if (i % 4 == 3) parent = goro::with_value(parent, user_key, i);  // value nodes in between
        auto [c, f] = i % 5 == 0 ? goro::with_timeout(parent, 1h + std::chrono::minutes(i)) : goro::with_cancel(parent);
        chain.push_back(c);
        cancels.push_back(f);
      }
      CHECK(pending_timers() == 1);  // each later deadline rides on the first
      goro::chan<std::error_code> leaf_saw{1};
      goro::spawn({.name = "leaf-waiter"}, [leaf = chain.back(), leaf_saw] {
        leaf.done().recv();
        leaf_saw.send(leaf.err());
      });
      CHECK(until_parked("leaf-waiter", goro::wait_reason::chan_receive));  // CHECK: this fiber must not throw
      cancel_root();
      CHECK(leaf_saw.recv() == goro::context_errc::canceled);
      long not_cancelled = 0;
      for (auto& c : chain)
        if (c.err() != goro::context_errc::canceled || !done_is_closed(c)) ++not_cancelled;
      CHECK(not_cancelled == 0);
      CHECK(pending_timers() == 0);
      cancels.clear();
      while (!chain.empty()) chain.pop_back();  // leaf first: no deep destructor recursion
      finished.send(1);
    });
    finished.recv();
  });
}

TEST_CASE("cancelling a parent with a wide fan-out cancels every child and grandchild and wakes their waiters") {
  unsigned workers = GORO_WORKERS();
  source from = GENERATE(source::fiber, source::thread);
  INFO("cancel from a " << to_cstr(from));
  const long width = goro_test::scaled(10'000, 1'000);
  const long waiters = 200;
  goro_test::run_in_goro(workers, [&] {
    goro::context parent;
    goro::cancel_func cancel_parent;
    std::tie(parent, cancel_parent) = goro::with_cancel(goro::background());
    std::vector<goro::context> children, grandchildren;
    std::vector<goro::cancel_func> cancels;
    for (long i = 0; i < width; ++i) {
      auto [c, f] = goro::with_cancel(parent);
      auto [g, gf] = goro::with_cancel(goro::with_value(c, user_key, static_cast<int>(i)));
      children.push_back(c);
      grandchildren.push_back(g);
      cancels.push_back(f);
      cancels.push_back(gf);
    }
    CHECK(attached_children(parent) == static_cast<std::size_t>(width));
    goro::wait_group wg;
    std::atomic<long> woken_canceled{0};
    wg.add(waiters);
    for (long i = 0; i < waiters; ++i) {
      goro::context target = grandchildren[static_cast<std::size_t>(i * (width / waiters))];
      goro::spawn({.name = "fan-waiter"}, [target, &woken_canceled, &wg] {
        goro::select(goro::on_done(target));
        if (target.err() == goro::context_errc::canceled) woken_canceled.fetch_add(1);
        wg.done();
      });
    }
    REQUIRE(until_parked("fan-waiter", goro::wait_reason::select, waiters));
    cancel_from(from, cancel_parent);
    wg.wait();
    CHECK(woken_canceled.load() == waiters);
    long wrong = 0;
    for (long i = 0; i < width; ++i) {
      auto k = static_cast<std::size_t>(i);
      if (children[k].err() != goro::context_errc::canceled) ++wrong;
      if (grandchildren[k].err() != goro::context_errc::canceled) ++wrong;
      if (!done_is_closed(grandchildren[k])) ++wrong;
      if (attached_children(children[k]) != 0) ++wrong;
    }
    CHECK(wrong == 0);
    CHECK(attached_children(parent) == 0);
  });
}

TEST_CASE("cancelling a node of a random tree cancels exactly its subtree and removes exactly its timers") {
  const int nodes = 400;
  goro_test::run_in_goro(2, [&] {
    std::mt19937 rng(20240611);
    for (int round = 0; round < 10; ++round) {
      struct node {
        int parent = -1;
        goro::context ctx;
        goro::cancel_func cancel;
        bool cancellable = false;
        bool armed = false;  // has its own timer on the heap
        std::optional<clock_type::time_point> effective_deadline;
      };
      std::vector<node> tree(nodes);
      const auto now = clock_type::now();
      auto [root_ctx, root_cancel] = goro::with_cancel(goro::background());
      tree[0].ctx = root_ctx;
      tree[0].cancel = root_cancel;
      tree[0].cancellable = true;
      for (int i = 1; i < nodes; ++i) {
        node& n = tree[static_cast<std::size_t>(i)];
        n.parent = static_cast<int>(rng() % static_cast<unsigned>(i));
        const node& p = tree[static_cast<std::size_t>(n.parent)];
        n.effective_deadline = p.effective_deadline;
        switch (rng() % 4) {
          case 0:
            n.ctx = goro::with_value(p.ctx, user_key, i);
            break;
          case 1: {
            auto t = now + 1h + std::chrono::seconds(rng() % 3600);
            std::tie(n.ctx, n.cancel) = goro::with_deadline(p.ctx, t);
            n.cancellable = true;
            n.armed = !p.effective_deadline || t < *p.effective_deadline;
            if (n.armed) n.effective_deadline = t;
            break;
          }
          default:
            std::tie(n.ctx, n.cancel) = goro::with_cancel(p.ctx);
            n.cancellable = true;
        }
      }
      std::size_t armed = 0;
      for (auto& n : tree) armed += n.armed ? 1 : 0;
      REQUIRE(pending_timers() == armed);

      int victim = 0;
      do victim = static_cast<int>(1 + rng() % (nodes - 1));
      while (!tree[static_cast<std::size_t>(victim)].cancellable);
      tree[static_cast<std::size_t>(victim)].cancel();

      auto in_subtree = [&](int i) {
        for (; i >= 0; i = tree[static_cast<std::size_t>(i)].parent)
          if (i == victim) return true;
        return false;
      };
      int wrong = 0;
      std::size_t still_armed = 0;
      for (int i = 0; i < nodes; ++i) {
        const node& n = tree[static_cast<std::size_t>(i)];
        bool expect = in_subtree(i);
        if (static_cast<bool>(n.ctx.err()) != expect) ++wrong;
        if (expect && n.ctx.err() != goro::context_errc::canceled) ++wrong;
        if (n.armed && !expect) ++still_armed;
        if (n.ctx.deadline() != n.effective_deadline) ++wrong;
      }
      CHECK(wrong == 0);
      CHECK(pending_timers() == still_armed);
      root_cancel();
      CHECK(pending_timers() == 0);
    }
  });
}

// ---------------------------------------------------------------------------
// Concurrency of cancel

TEST_CASE("cancel is idempotent and thread-safe: many fibers and plain threads cancel a tree at once") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 32, threads = 4, repeats = 50;
  const long rounds = goro_test::scaled(50, 5);
  goro_test::run_in_goro(workers, [&] {
    for (long r = 0; r < rounds; ++r) {
      auto [root, cancel_root] = goro::with_cancel(goro::background());
      // Every caller cancels the root and some children; children are also
      // cancelled by the root's propagation at the same time.
      std::vector<goro::context> kids;
      std::vector<goro::cancel_func> kid_cancels;
      for (int i = 0; i < 16; ++i) {
        auto [k, f] = i % 2 == 0 ? goro::with_cancel(root) : goro::with_timeout(root, 1h);
        kids.push_back(k);
        kid_cancels.push_back(f);
      }
      goro::chan<int> start{0};
      goro::wait_group wg;
      std::atomic<int> exceptions{0};
      auto hammer = [&, root_cancel = cancel_root](int who) {
        start.recv();
        try {
          for (int i = 0; i < repeats; ++i) {
            if ((i + who) % 3 == 0)
              kid_cancels[static_cast<std::size_t>((i + who) % 16)]();
            else
              root_cancel();
          }
        } catch (...) {
          exceptions.fetch_add(1);
        }
      };
      wg.add(fibers);
      for (int i = 0; i < fibers; ++i)
        goro::spawn([&, i] {
          hammer(i);
          wg.done();
        });
      std::vector<std::thread> ts;
      for (int i = 0; i < threads; ++i) ts.emplace_back([&, i] { hammer(fibers + i); });
      start.close();
      wg.wait();
      for (auto& t : ts) t.join();
      CHECK(exceptions.load() == 0);
      CHECK(root.err() == goro::context_errc::canceled);
      CHECK(done_is_closed(root));
      int wrong = 0;
      for (auto& k : kids)
        if (k.err() != goro::context_errc::canceled || !done_is_closed(k)) ++wrong;
      CHECK(wrong == 0);
      CHECK(attached_children(root) == 0);
      CHECK(pending_timers() == 0);
    }
  });
}

// Regression test for a fixed bug. It was: with_deadline() attaches the new node to its parent first
// and only then checks is_done and arms the timer, writing the plain bool
// timer_armed. A parent cancel on another thread in between cancels the
// child, reads timer_armed == false (so removes no timer), and then the
// creator arms it: a cancelled context keeps a pending timer until it is
// released or the timer fires (here: an hour), and timer_armed is read and
// written concurrently. Seen about once in a few thousand rounds.
TEST_CASE("children created while their parent is being cancelled keep no timer") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(300, 30);
  const int per_maker = 60;
  goro_test::run_in_goro(workers, [&] {
    long not_cancelled = 0, timers_left = 0, still_attached = 0;
    for (long r = 0; r < rounds; ++r) {
      auto [parent, cancel_parent] = goro::with_cancel(goro::background());
      std::vector<goro::context> made[3];
      std::vector<goro::cancel_func> cancels[3];
      std::atomic<int> progress{0};
      const int cancel_at = static_cast<int>(r % (2 * per_maker));
      goro::chan<int> start{0};
      goro::wait_group wg;
      auto make_children = [&, p = parent](int slot) {
        start.recv();
        for (int i = 0; i < per_maker; ++i) {
          auto [c, f] = i % 2 == 0 ? goro::with_timeout(p, 1h) : goro::with_cancel(p);
          made[slot].push_back(c);
          cancels[slot].push_back(f);
          progress.fetch_add(1);
        }
      };
      wg.add(2);
      goro::spawn([&] {
        make_children(0);
        wg.done();
      });
      goro::spawn([&] {
        make_children(1);
        wg.done();
      });
      std::thread maker([&] { make_children(2); });
      std::thread canceller([&, c = cancel_parent] {
        start.recv();
        while (progress.load() < cancel_at) std::this_thread::yield();
        c();
      });
      start.close();
      wg.wait();
      maker.join();
      canceller.join();
      for (auto& v : made)
        for (auto& c : v)
          if (c.err() != goro::context_errc::canceled) ++not_cancelled;
      // Every child is cancelled and still alive here: none may still have
      // a timer armed.
      if (pending_timers() != 0) ++timers_left;
      if (attached_children(parent) != 0) ++still_attached;
    }
    CHECK(not_cancelled == 0);
    CHECK(still_attached == 0);
    CHECK(timers_left == 0);
  });
}

// ---------------------------------------------------------------------------
// Detaching: short-lived children leave the parent as it was

TEST_CASE("a cancelled or destroyed child detaches from its parent") {
  goro_test::run_in_goro(2, [] {
    auto [parent, cancel_parent] = goro::with_cancel(goro::background());
    goro::context valued = goro::with_value(parent, user_key, 1);
    std::vector<std::pair<goro::context, goro::cancel_func>> kids;
    for (int i = 0; i < 100; ++i) kids.push_back(i % 2 == 0 ? goro::with_cancel(valued) : goro::with_timeout(parent, 1h));
    CHECK(attached_children(parent) == 100);
    CHECK(pending_timers() == 50);
    for (int i = 0; i < 50; ++i) kids[static_cast<std::size_t>(i)].second();  // cancelled but alive
    CHECK(attached_children(parent) == 50);
    CHECK(pending_timers() == 25);
    kids.erase(kids.begin() + 50, kids.end());  // destroyed without cancel
    CHECK(attached_children(parent) == 0);
    CHECK(pending_timers() == 0);
    {
      // A child whose deadline fired detaches too.
      auto [short_lived, c] = goro::with_timeout(parent, 5ms);
      CHECK(attached_children(parent) == 1);
      short_lived.done().recv();
      // The timer's cancel closes done before it detaches: no event for that.
      CHECK(goro_test::eventually([p = parent] { return attached_children(p) == 0; }));
    }
    CHECK_FALSE(parent.err());
    cancel_parent();
  });
}

TEST_CASE("a million short-lived children leave the parent's memory flat") {
  // Bound: children of a parent may cost no more memory than the same churn
  // of children of background() (which attach to nothing), plus 4 MiB. A
  // child the parent kept would cost its context_state and done channel
  // (several hundred bytes): 900,000 of them are hundreds of MiB, and even at
  // GORO_STRESS_SCALE=0.1 (90,000) well over 4 MiB.
  const long n = goro_test::scaled(1'000'000, 20'000);
  goro_test::run_in_goro(2, [&] {
    auto [parent, cancel_parent] = goro::with_cancel(goro::background());
    goro::context valued = goro::with_value(parent, user_key, 1);
    auto churn = [&](const goro::context& p, const goro::context& pv, long count) {
      for (long i = 0; i < count; ++i) {
        switch (i % 4) {
          case 0: {
            auto [c, f] = goro::with_cancel(p);
            f();  // cancelled, then released
            break;
          }
          case 1: {
            auto [c, f] = goro::with_cancel(pv);  // released without cancel, through a value node
            break;
          }
          case 2: {
            auto [c, f] = goro::with_timeout(p, 1h);
            f();
            break;
          }
          default: {
            auto [c, f] = goro::with_timeout(pv, 1h);  // released, timer and all
            break;
          }
        }
      }
    };
    goro::context bg_valued = goro::with_value(goro::background(), user_key, 1);
    churn(goro::background(), bg_valued, n / 10);  // warm the allocator up
    const long base_before = resident_bytes();
    churn(goro::background(), bg_valued, n);
    const long base_grown = resident_bytes() - base_before;
    const long before = resident_bytes();
    churn(parent, valued, n);
    const long grown = resident_bytes() - before;
    INFO("RSS grew by " << grown << " bytes over " << n << " children of a parent, by " << base_grown
                        << " bytes over as many children of background()");
    CHECK(grown < std::max(base_grown, 0L) + 4 * 1024 * 1024);
    CHECK(attached_children(parent) == 0);
    CHECK(pending_timers() == 0);
    CHECK_FALSE(parent.err());
    cancel_parent();
    CHECK(parent.err() == goro::context_errc::canceled);
  });
}

// ---------------------------------------------------------------------------
// std::stop_token interop

TEST_CASE("stop_token() is requested when the context is cancelled, also when asked for afterwards") {
  goro_test::run_in_goro(2, [] {
    auto [parent, cancel_parent] = goro::with_cancel(goro::background());
    auto [ctx, cancel] = goro::with_cancel(goro::with_value(parent, user_key, 1));
    std::stop_token token = ctx.stop_token();
    std::stop_token via_value = goro::with_value(ctx, user_key, 2).stop_token();
    CHECK(token.stop_possible());
    CHECK_FALSE(token.stop_requested());
    std::atomic<int> callbacks{0};
    std::stop_callback cb(token, [&] { callbacks.fetch_add(1); });
    std::stop_callback cb2(via_value, [&] { callbacks.fetch_add(1); });
    CHECK(callbacks.load() == 0);
    cancel_parent();  // reaches ctx through the value node
    CHECK(token.stop_requested());
    CHECK(via_value.stop_requested());
    CHECK(callbacks.load() == 2);
    // Asked for after cancellation: requested at once.
    std::stop_token late = ctx.stop_token();
    CHECK(late.stop_requested());
    auto [fresh, cancel_fresh] = goro::with_cancel(goro::background());
    cancel_fresh();
    CHECK(fresh.stop_token().stop_requested());
    cancel();
  });
}

TEST_CASE("with_stop_token: a std::stop_source cancels the context and wakes its waiters") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    std::stop_source source;
    goro::context ctx;
    goro::cancel_func cancel;
    std::tie(ctx, cancel) = goro::with_stop_token(goro::background(), source.get_token());
    auto [child, cancel_child] = goro::with_cancel(ctx);
    goro::chan<std::error_code> saw{1};
    goro::spawn({.name = "stop-waiter"}, [child = child, saw] {
      goro::select(goro::on_done(child));  // only the stop_source ends it
      saw.send(child.err());
    });
    REQUIRE(until_parked("stop-waiter", goro::wait_reason::select));
    CHECK_FALSE(ctx.err());
    std::thread requester([&] { source.request_stop(); });
    requester.join();
    CHECK(saw.recv() == goro::context_errc::canceled);
    CHECK(ctx.err() == goro::context_errc::canceled);
    CHECK(pending_timers() == 0);

    // An already requested token: cancelled at once.
    std::stop_source done_source;
    done_source.request_stop();
    auto [early, cancel_early] = goro::with_stop_token(goro::background(), done_source.get_token());
    CHECK(early.err() == goro::context_errc::canceled);

    // The link is one-way: cancelling the context does not request the source,
    // and the parent still cancels it.
    std::stop_source untouched;
    auto [parent, cancel_parent] = goro::with_cancel(goro::background());
    auto [linked, cancel_linked] = goro::with_stop_token(parent, untouched.get_token());
    cancel_parent();
    CHECK(linked.err() == goro::context_errc::canceled);
    CHECK_FALSE(untouched.stop_requested());

    // A source requested after its context is gone is harmless.
    std::stop_source outlives;
    {
      auto [gone, cancel_gone] = goro::with_stop_token(goro::background(), outlives.get_token());
    }
    outlives.request_stop();
  });
}

// ---------------------------------------------------------------------------
// Context-aware blocking operations

namespace {

enum class op_kind { chan_send, chan_recv, sleep, wait_group, mutex, semaphore, future, select_done };

const char* to_cstr(op_kind k) {
  switch (k) {
    case op_kind::chan_send: return "chan::send(ctx, v)";
    case op_kind::chan_recv: return "chan::recv(ctx)";
    case op_kind::sleep: return "this_fiber::sleep_for(ctx, d)";
    case op_kind::wait_group: return "wait_group::wait(ctx)";
    case op_kind::mutex: return "mutex::lock(ctx)";
    case op_kind::semaphore: return "semaphore::acquire(ctx, n)";
    case op_kind::future: return "future::get(ctx)";
    case op_kind::select_done: return "select(on_done(ctx))";
  }
  return "?";
}

goro::wait_reason reason_of(op_kind k) {
  switch (k) {
    case op_kind::wait_group: return goro::wait_reason::wait_group;
    case op_kind::mutex: return goro::wait_reason::mutex_lock;
    case op_kind::semaphore: return goro::wait_reason::semaphore;
    case op_kind::future: return goro::wait_reason::future_get;
    default: return goro::wait_reason::select;  // chan ops and sleep are selects with the done channel
  }
}

std::error_code error_code_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& ex) {
    return ex.code();
  } catch (...) {
  }
  return std::make_error_code(std::errc::invalid_argument);
}

// The primitives one operation blocks on, made so that the operation cannot
// complete until finish() (the semaphore and the mutex are held, the wait
// group counts one, the future's fiber waits for a gate, nobody is at the
// other end of the channel).
struct op_fixture {
  op_kind kind;
  goro::chan<int> ch{0};
  goro::chan<int> never{0};
  goro::wait_group wg;
  goro::mutex mu;
  goro::semaphore sem{3};
  goro::chan<int> gate{0};
  goro::future<int> fut;

  explicit op_fixture(op_kind k) : kind(k) {
    switch (kind) {
      case op_kind::wait_group: wg.add(1); break;
      case op_kind::mutex: mu.lock(); break;
      case op_kind::semaphore: sem.acquire(2); break;
      case op_kind::future:
        fut = goro::async([g = gate] {
          g.recv();
          return 7;
        });
        break;
      default: break;
    }
  }

  // Runs the operation; an empty error_code when it completed.
  std::error_code run(const goro::context& ctx) {
    switch (kind) {
      case op_kind::chan_send:
        return ch.send(ctx, 1) == goro::chan_op::canceled ? ctx.err() : std::error_code{};
      case op_kind::chan_recv: {
        auto r = ch.recv(ctx);
        return r.status == goro::chan_op::canceled ? ctx.err() : std::error_code{};
      }
      case op_kind::sleep: return goro::this_fiber::sleep_for(ctx, 1h);  // the behaviour under test: only ctx ends it
      case op_kind::wait_group: return wg.wait(ctx);
      case op_kind::mutex: {
        auto e = mu.lock(ctx);
        if (!e) mu.unlock();
        return e;
      }
      case op_kind::semaphore: {
        auto e = sem.acquire(ctx, 2);
        if (!e) sem.release(2);
        return e;
      }
      case op_kind::future: {
        auto r = fut.get(ctx);
        return r.ok() ? std::error_code{} : error_code_of(r.error());
      }
      case op_kind::select_done: {
        std::error_code e;
        goro::select(goro::on_recv(never), goro::on_done(ctx, [&] { e = ctx.err(); }));
        return e;
      }
    }
    return std::make_error_code(std::errc::invalid_argument);
  }

  // Checks that the cancelled operation left the primitive as it found it,
  // and releases it.
  void finish() {
    switch (kind) {
      case op_kind::chan_send:
        CHECK(ch.try_recv().status == goro::chan_op::would_block);  // nothing was sent
        break;
      case op_kind::chan_recv:
        CHECK(ch.try_send(5) == goro::chan_op::would_block);  // no receiver left behind
        break;
      case op_kind::wait_group:
        CHECK(wg.count() == 1);
        wg.done();
        CHECK_FALSE(wg.wait(goro::background()));
        break;
      case op_kind::mutex:
        CHECK_FALSE(mu.try_lock());  // still ours
        mu.unlock();
        CHECK(mu.try_lock());  // and free again, with nobody queued
        mu.unlock();
        break;
      case op_kind::semaphore:
        CHECK(sem.in_use() == 2);  // nothing taken by the cancelled request
        sem.release(2);
        CHECK(sem.try_acquire(3));
        sem.release(3);
        break;
      case op_kind::future:
        CHECK_FALSE(fut.ready());
        gate.close();
        CHECK(fut.get() == 7);
        break;
      default: break;
    }
  }
};

constexpr op_kind all_ops[] = {op_kind::chan_send, op_kind::chan_recv, op_kind::sleep,  op_kind::wait_group,
                               op_kind::mutex,     op_kind::semaphore, op_kind::future, op_kind::select_done};

}  // namespace

TEST_CASE("every context-aware blocking operation returns ctx.err() when its context ends first") {
  unsigned workers = GORO_WORKERS();
  op_kind kind = GENERATE(from_range(std::begin(all_ops), std::end(all_ops)));
  source from = GENERATE(source::fiber, source::thread, source::deadline);
  INFO(to_cstr(kind) << " ended by a " << to_cstr(from) << " with " << workers << " workers");
  goro_test::run_in_goro(workers, [&] {
    op_fixture fx(kind);
    goro::context ctx;
    goro::cancel_func cancel;
    const auto start = clock_type::now();
    if (from == source::deadline)
      std::tie(ctx, cancel) = goro::with_timeout(goro::background(), 50ms);
    else
      std::tie(ctx, cancel) = goro::with_cancel(goro::background());
    goro::chan<std::error_code> result{1};
    goro::spawn({.name = "ctx-op"}, [&fx, ctx, result] { result.send(fx.run(ctx)); });
    REQUIRE(until_parked("ctx-op", reason_of(kind)));
    if (from != source::deadline) {
      CHECK(result.try_recv().status == goro::chan_op::would_block);
      cancel_from(from, cancel);
      CHECK(result.recv() == goro::context_errc::canceled);
    } else {
      CHECK(result.recv() == goro::context_errc::deadline_exceeded);
      CHECK(clock_type::now() - start >= 50ms);
    }
    fx.finish();
    cancel();
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("every context-aware blocking operation returns at once on an already-ended context") {
  unsigned workers = GORO_WORKERS();
  op_kind kind = GENERATE(from_range(std::begin(all_ops), std::end(all_ops)));
  bool by_deadline = GENERATE(false, true);
  INFO(to_cstr(kind) << (by_deadline ? " on a context past its deadline" : " on a cancelled context"));
  goro_test::run_in_goro(workers, [&] {
    op_fixture fx(kind);
    goro::context ctx;
    goro::cancel_func cancel;
    if (by_deadline) {
      std::tie(ctx, cancel) = goro::with_deadline(goro::background(), clock_type::now() - 1ms);
    } else {
      std::tie(ctx, cancel) = goro::with_cancel(goro::background());
      cancel();
    }
    const auto start = clock_type::now();
    std::error_code e = fx.run(ctx);  // in the main fiber: would park (or sleep 1h) if it did not return
    CHECK(clock_type::now() - start < 1s);
    CHECK(e == (by_deadline ? goro::context_errc::deadline_exceeded : goro::context_errc::canceled));
    fx.finish();
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("context-aware operations on a plain thread are cancelled by a fiber") {
  unsigned workers = GORO_WORKERS();
  op_kind kind = GENERATE(from_range(std::begin(all_ops), std::end(all_ops)));
  INFO(to_cstr(kind) << " on a plain thread");
  goro_test::run_in_goro(workers, [&] {
    op_fixture fx(kind);
    goro::context ctx;
    goro::cancel_func cancel;
    std::tie(ctx, cancel) = goro::with_cancel(goro::background());
    goro::chan<std::error_code> result{1};
    std::thread t([&] { result.send(fx.run(ctx)); });
    // A thread's wait is invisible to list_fibers; the cancel may come before
    // or after it blocks, and must end it either way.
    goro::this_fiber::yield();
    cancel_from(source::fiber, cancel);
    CHECK(result.recv() == goro::context_errc::canceled);
    t.join();
    fx.finish();
  });
}

TEST_CASE("mutex::lock(ctx): a cancelled waiter loses no wake-up for the waiters behind it") {
  unsigned workers = GORO_WORKERS();
  bool race = GENERATE(false, true);
  INFO((race ? "cancel races the unlock" : "cancel, then unlock") << " with " << workers << " workers");
  const long rounds = goro_test::scaled(200, 20);
  goro_test::run_in_goro(workers, [&] {
    goro::mutex mu;
    long counter = 0;  // guarded by mu
    long acquired = 0, cancelled = 0, bad = 0;
    for (long r = 0; r < rounds; ++r) {
      goro::context ctx;
      goro::cancel_func cancel;
      std::tie(ctx, cancel) = goro::with_cancel(goro::background());
      goro::chan<int> plain_done{2};
      goro::chan<std::error_code> ctx_done{1};
      mu.lock();
      auto plain_waiter = [&, plain_done] {
        mu.lock();
        ++counter;
        mu.unlock();
        plain_done.send(1);
      };
      // Queue: a plain waiter, the cancellable one, another plain waiter.
      goro::spawn({.name = "mutex-plain"}, plain_waiter);
      REQUIRE(until_parked("mutex-plain", goro::wait_reason::mutex_lock, 1));
      goro::spawn({.name = "mutex-ctx"}, [&, ctx, ctx_done] {
        std::error_code e = mu.lock(ctx);
        if (!e) {
          ++counter;
          mu.unlock();
        }
        ctx_done.send(e);
      });
      REQUIRE(until_parked("mutex-ctx", goro::wait_reason::mutex_lock, 1));
      goro::spawn({.name = "mutex-plain"}, plain_waiter);
      REQUIRE(until_parked("mutex-plain", goro::wait_reason::mutex_lock, 2));
      std::error_code e;
      if (race) {
        std::thread t([&] { cancel(); });
        mu.unlock();
        t.join();
        e = ctx_done.recv().value();
      } else {
        cancel();
        e = ctx_done.recv().value();
        if (e != goro::context_errc::canceled) ++bad;
        mu.unlock();
      }
      // Both plain waiters must get the mutex, whatever the cancelled one did.
      plain_done.recv();
      plain_done.recv();
      if (e)
        ++cancelled;
      else
        ++acquired;
      if (e && e != goro::context_errc::canceled) ++bad;
      CHECK(mu.try_lock());
      mu.unlock();
    }
    CHECK(bad == 0);
    CHECK(counter == 2 * rounds + acquired);
    CHECK(acquired + cancelled == rounds);
    if (!race) CHECK(cancelled == rounds);
  });
}

// ---------------------------------------------------------------------------
// Regression tests for fixed bugs

// Regression test for a fixed bug. It was: context_state::cancel() recurses
// once per level of descendants (child->cancel(e) inside cancel()), and
// ~context_state recurses once per level too (each node's shared_ptr to its
// parent releases the parent inside the child's destructor). On a fiber's
// default 64 KiB stack, cancelling a chain about 350 levels deep overflows
// the stack (measured: 300 fine, 400 overflows; about 180 bytes per level),
// and releasing a chain about 1,300 deep without cancelling overflows too.
// Go's context has no depth limit. Fix: cancel iteratively (an explicit
// work list of promoted children), and unlink the parent chain iteratively
// in the destructor. Runs in a child process: the overflow aborts.
TEST_CASE("cancelling a 10,000-deep context chain on a fiber overflows its stack") {
  int status = wait_status_of_child([] {
    goro::run_options o;
    o.workers = 2;
    goro::run(o, [] {
      auto [root, cancel_root] = goro::with_cancel(goro::background());
      std::vector<goro::context> chain{root};
      std::vector<goro::cancel_func> cancels;
      for (int i = 0; i < 10'000; ++i) {
        auto [c, f] = goro::with_cancel(chain.back());
        chain.push_back(c);
        cancels.push_back(f);
      }
      cancel_root();
      if (chain.back().err() != goro::context_errc::canceled) std::_Exit(4);
      while (!chain.empty()) chain.pop_back();
    });
  });
  INFO("child wait status " << status << (WIFSIGNALED(status) ? " (killed by a signal)" : ""));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("releasing a 10,000-deep context chain on a fiber overflows its stack") {
  int status = wait_status_of_child([] {
    goro::run_options o;
    o.workers = 2;
    goro::run(o, [] {
      goro::context leaf;
      std::vector<goro::cancel_func> cancels;
      {
        auto [root, cancel_root] = goro::with_cancel(goro::background());
        leaf = root;
        cancels.push_back(cancel_root);
      }
      for (int i = 0; i < 10'000; ++i) {
        auto [c, f] = goro::with_cancel(leaf);
        leaf = c;
        cancels.push_back(f);
      }
      cancels.clear();
      leaf = goro::context{};  // the whole chain goes here, leaf first, recursively
    });
  });
  INFO("child wait status " << status << (WIFSIGNALED(status) ? " (killed by a signal)" : ""));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
