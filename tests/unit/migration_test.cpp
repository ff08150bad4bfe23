// SPDX-License-Identifier: MIT
// Fibers that migrate between workers keep per-thread state straight: the current worker and C++ exception state.
#include "goro_test.hpp"

#include <goro/detail/scheduler.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

namespace {

long os_thread_id() { return static_cast<long>(::syscall(SYS_gettid)); }

// Blocks the calling fiber once each way that can move it to another worker:
// a yield (the fiber may be stolen from the queue), a short sleep (the timer
// may fire on another worker) and a wait_group hand-off with a helper fiber
// (it is readied by whichever worker runs the helper).
void block_every_way() {
  goro::yield();
  goro::sleep_for(100us);
  goro::wait_group wg;
  wg.add(1);
  goro::spawn([&wg] {
    goro::yield();
    wg.done();
  });
  wg.wait();
}

// Blocks (each way, repeatedly) until the fiber runs on an OS thread other
// than `from`, or until `deadline`, but at least `min_rounds` times.
// Returns whether it ended on another thread.
bool block_until_moved(long from, int min_rounds, std::chrono::steady_clock::time_point deadline) {
  for (int round = 0;; ++round) {
    block_every_way();
    if (round + 1 >= min_rounds && (os_thread_id() != from || std::chrono::steady_clock::now() >= deadline))
      return os_thread_id() != from;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// (a) The current worker, read after every resume, is the thread's own.

namespace {

struct observation {
  const goro::detail::worker* worker;
  long tid;
};

void observe(std::vector<observation>& out) {
  out.push_back({goro::detail::current_worker(), os_thread_id()});
}

}  // namespace

TEST_CASE("current_worker after every resume belongs to the thread the fiber runs on") {
  unsigned workers = GORO_WORKERS();
  const int fibers = 8;
  const long min_iterations = goro_test::scaled(200, 20);
  std::vector<std::vector<observation>> seen(fibers + 1);  // [fibers] is the main fiber
  std::atomic<bool> someone_moved{false};

  goro_test::run_in_goro(workers, [&] {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    goro::wait_group wg;
    wg.add(fibers);
    for (int i = 0; i < fibers; ++i)
      goro::spawn({.name = "tls-prober"}, [&, i] {
        auto& mine = seen[i];
        // The reads sit in the same function as the switches (not behind a
        // helper): if goro's accessor ever let the compiler keep the TLS
        // address across a switch, the previous thread's slot would show here
        // paired with the new thread's id.
        mine.push_back({goro::detail::current_worker(), os_thread_id()});
        std::set<const goro::detail::worker*> visited{mine.back().worker};
        for (long it = 0;; ++it) {
          goro::yield();
          mine.push_back({goro::detail::current_worker(), os_thread_id()});
          goro::sleep_for(50us);
          mine.push_back({goro::detail::current_worker(), os_thread_id()});
          goro::wait_group hop;
          hop.add(1);
          goro::spawn([&hop] { hop.done(); });
          hop.wait();
          mine.push_back({goro::detail::current_worker(), os_thread_id()});
          for (auto k = mine.size() - 3; k < mine.size(); ++k) visited.insert(mine[k].worker);
          if (visited.size() > 1) someone_moved = true;
          // Enough iterations, and (with several workers) some fiber has moved
          // or time is up.
          if (it + 1 >= min_iterations &&
              (workers == 1 || someone_moved.load() || std::chrono::steady_clock::now() >= deadline))
            break;
        }
        wg.done();
      });
    observe(seen[fibers]);
    wg.wait();
    observe(seen[fibers]);
  });

  std::map<const goro::detail::worker*, std::set<long>> tids_of_worker;
  std::map<long, std::set<const goro::detail::worker*>> workers_of_tid;
  std::size_t fibers_that_moved = 0;
  std::size_t total = 0;
  for (auto& per_fiber : seen) {
    std::set<const goro::detail::worker*> mine;
    for (auto& o : per_fiber) {
      tids_of_worker[o.worker].insert(o.tid);
      workers_of_tid[o.tid].insert(o.worker);
      mine.insert(o.worker);
      ++total;
    }
    if (mine.size() > 1) ++fibers_that_moved;
  }
  INFO("observations: " << total << ", fibers that moved: " << fibers_that_moved);
  CHECK(tids_of_worker.count(nullptr) == 0);  // always inside a worker
  CHECK(tids_of_worker.size() <= workers);
  for (auto& [w, tids] : tids_of_worker) CHECK(tids.size() == 1);  // a stale read pairs a worker with a foreign tid
  for (auto& [tid, ws] : workers_of_tid) CHECK(ws.size() == 1);
  if (workers >= 2) {
    CHECK(fibers_that_moved >= 1);  // otherwise the test proved nothing
    CHECK(tids_of_worker.size() >= 2);
  } else {
    CHECK(tids_of_worker.size() == 1);
  }
}

// ---------------------------------------------------------------------------
// (b) C++ exception state (current_exception, uncaught_exceptions) is per
// fiber, even when a fiber blocks inside a catch block or a destructor run by
// unwinding and resumes on another thread.

namespace {

struct catch_result {
  bool what_ok = false;            // the caught reference still reads right
  bool current_ok = false;         // std::current_exception() is ours after blocking
  bool rethrow_ok = false;         // `throw;` rethrows ours after blocking
  bool uncaught_ok = false;        // uncaught_exceptions() == 0 inside the handler
  bool cleared_after = false;      // no current exception once the handler is left
  bool moved = false;              // the handler resumed on another thread
};

// Checks that `expected` (type E, message msg) is the current exception.
template <class E>
bool current_is(const std::string& msg) {
  std::exception_ptr p = std::current_exception();
  if (!p) return false;
  try {
    std::rethrow_exception(p);
  } catch (const E& e) {
    return e.what() == msg;
  } catch (...) {
    return false;
  }
}

template <class E>
bool bare_rethrow_is(const std::string& msg) {
  try {
    throw;
  } catch (const E& e) {
    return e.what() == msg;
  } catch (...) {
    return false;
  }
}

void throw_and_block_in_handler(const std::string& msg, catch_result& r, int min_rounds,
                                std::chrono::steady_clock::time_point deadline) {
  try {
    throw std::runtime_error(msg);
  } catch (const std::runtime_error& e) {
    long tid = os_thread_id();
    r.moved = block_until_moved(tid, min_rounds, deadline);
    r.what_ok = e.what() == msg;
    r.current_ok = current_is<std::runtime_error>(msg);
    r.rethrow_ok = bare_rethrow_is<std::runtime_error>(msg);
    r.uncaught_ok = std::uncaught_exceptions() == 0;
  }
  r.cleared_after = std::current_exception() == nullptr && std::uncaught_exceptions() == 0;
}

struct nested_result {
  catch_result outer, inner;
  bool outer_restored = false;  // after the inner handler: the outer exception is current again
};

void nested_catch_blocking(const std::string& msg, nested_result& r, int min_rounds,
                           std::chrono::steady_clock::time_point deadline) {
  const std::string inner_msg = msg + "/inner";
  try {
    throw std::runtime_error(msg);
  } catch (const std::runtime_error& outer) {
    long tid = os_thread_id();
    r.outer.moved = block_until_moved(tid, 1, deadline);
    r.outer.what_ok = outer.what() == msg;
    r.outer.current_ok = current_is<std::runtime_error>(msg);
    try {
      throw std::logic_error(inner_msg);
    } catch (const std::logic_error& inner) {
      long inner_tid = os_thread_id();
      r.inner.moved = block_until_moved(inner_tid, min_rounds, deadline);
      r.inner.what_ok = inner.what() == inner_msg;
      r.inner.current_ok = current_is<std::logic_error>(inner_msg);
      r.inner.rethrow_ok = bare_rethrow_is<std::logic_error>(inner_msg);
      r.inner.uncaught_ok = std::uncaught_exceptions() == 0;
    }
    block_every_way();
    r.outer_restored = current_is<std::runtime_error>(msg) && outer.what() == msg;
    r.outer.rethrow_ok = bare_rethrow_is<std::runtime_error>(msg);
    r.outer.uncaught_ok = std::uncaught_exceptions() == 0;
  }
  r.outer.cleared_after = std::current_exception() == nullptr && std::uncaught_exceptions() == 0;
}

// A fiber that never throws: whatever other fibers on its workers are in the
// middle of, it must never see an exception of theirs.
struct bystander_result {
  long resumes = 0;
  long polluted = 0;  // resumes that saw a current or uncaught exception
};

void bystander(bystander_result& r, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    block_every_way();
    ++r.resumes;
    if (std::current_exception() != nullptr || std::uncaught_exceptions() != 0) ++r.polluted;
  }
}

}  // namespace

TEST_CASE("a fiber blocked in a catch block keeps its exception across workers") {
  unsigned workers = GORO_WORKERS();
  const int n = static_cast<int>(goro_test::scaled(32, 8));
  const int min_rounds = 3;
  std::vector<catch_result> results(n);
  std::vector<bystander_result> bystanders(4);
  std::atomic<bool> stop{false};

  goro_test::run_in_goro(workers, [&] {
    // One worker: no other thread to move to, so do not wait for a move.
    const auto deadline = std::chrono::steady_clock::now() + (workers >= 2 ? 3s : 0s);
    goro::wait_group throwers, watchers;
    watchers.add(static_cast<long>(bystanders.size()));
    for (auto& b : bystanders)
      goro::spawn({.name = "bystander"}, [&] {
        bystander(b, stop);
        watchers.done();
      });
    throwers.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "thrower"}, [&, i] {
        throw_and_block_in_handler("distinct message #" + std::to_string(i), results[i], min_rounds, deadline);
        throwers.done();
      });
    throwers.wait();
    stop = true;
    watchers.wait();
  });

  int moved = 0;
  for (int i = 0; i < n; ++i) {
    INFO("fiber " << i);
    CHECK(results[i].what_ok);
    CHECK(results[i].current_ok);
    CHECK(results[i].rethrow_ok);
    CHECK(results[i].uncaught_ok);
    CHECK(results[i].cleared_after);
    moved += results[i].moved ? 1 : 0;
  }
  for (auto& b : bystanders) {
    CHECK(b.resumes > 0);
    CHECK(b.polluted == 0);
  }
  INFO("handlers that resumed on another thread: " << moved << " of " << n);
  if (workers >= 2) CHECK(moved >= 1);
}

TEST_CASE("nested catch blocks that block keep the right exception current") {
  unsigned workers = GORO_WORKERS();
  const int n = static_cast<int>(goro_test::scaled(16, 4));
  std::vector<nested_result> results(n);
  goro_test::run_in_goro(workers, [&] {
    // One worker: no other thread to move to, so do not wait for a move.
    const auto deadline = std::chrono::steady_clock::now() + (workers >= 2 ? 3s : 0s);
    goro::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "nested-thrower"}, [&, i] {
        nested_catch_blocking("nested #" + std::to_string(i), results[i], 3, deadline);
        wg.done();
      });
    wg.wait();
  });
  int moved = 0;
  for (int i = 0; i < n; ++i) {
    INFO("fiber " << i);
    auto& r = results[i];
    CHECK(r.outer.what_ok);
    CHECK(r.outer.current_ok);
    CHECK(r.inner.what_ok);
    CHECK(r.inner.current_ok);
    CHECK(r.inner.rethrow_ok);
    CHECK(r.inner.uncaught_ok);
    CHECK(r.outer_restored);
    CHECK(r.outer.rethrow_ok);
    CHECK(r.outer.uncaught_ok);
    CHECK(r.outer.cleared_after);
    moved += (r.inner.moved || r.outer.moved) ? 1 : 0;
  }
  if (workers >= 2) CHECK(moved >= 1);
}

namespace {

struct unwind_result {
  int uncaught_before = -1;  // inside the destructor, before blocking
  int uncaught_after = -1;   // inside the destructor, after resuming
  bool moved = false;
  bool caught = false;       // the exception still reached its handler
  bool cleared_after = false;
};

// Its destructor blocks while an exception unwinds through it.
struct blocks_while_unwinding {
  unwind_result& r;
  std::chrono::steady_clock::time_point deadline;
  ~blocks_while_unwinding() {
    r.uncaught_before = std::uncaught_exceptions();
    r.moved = block_until_moved(os_thread_id(), 3, deadline);
    r.uncaught_after = std::uncaught_exceptions();
  }
};

void unwind_through_blocking_destructor(const std::string& msg, unwind_result& r,
                                        std::chrono::steady_clock::time_point deadline) {
  try {
    blocks_while_unwinding guard{r, deadline};
    throw std::runtime_error(msg);
  } catch (const std::runtime_error& e) {
    r.caught = e.what() == msg && std::uncaught_exceptions() == 0;
  }
  r.cleared_after = std::current_exception() == nullptr && std::uncaught_exceptions() == 0;
}

}  // namespace

TEST_CASE("a destructor that blocks during unwinding keeps uncaught_exceptions") {
  unsigned workers = GORO_WORKERS();
  const int n = static_cast<int>(goro_test::scaled(16, 4));
  std::vector<unwind_result> results(n);
  std::vector<bystander_result> bystanders(2);
  std::atomic<bool> stop{false};
  goro_test::run_in_goro(workers, [&] {
    // One worker: no other thread to move to, so do not wait for a move.
    const auto deadline = std::chrono::steady_clock::now() + (workers >= 2 ? 3s : 0s);
    goro::wait_group wg, watchers;
    watchers.add(static_cast<long>(bystanders.size()));
    for (auto& b : bystanders)
      goro::spawn({.name = "bystander"}, [&] {
        bystander(b, stop);
        watchers.done();
      });
    wg.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "unwinder"}, [&, i] {
        unwind_through_blocking_destructor("unwinding #" + std::to_string(i), results[i], deadline);
        wg.done();
      });
    wg.wait();
    stop = true;
    watchers.wait();
  });
  int moved = 0;
  for (int i = 0; i < n; ++i) {
    INFO("fiber " << i);
    CHECK(results[i].uncaught_before == 1);
    CHECK(results[i].uncaught_after == 1);
    CHECK(results[i].caught);
    CHECK(results[i].cleared_after);
    moved += results[i].moved ? 1 : 0;
  }
  for (auto& b : bystanders) {
    CHECK(b.resumes > 0);
    CHECK(b.polluted == 0);
  }
  if (workers >= 2) CHECK(moved >= 1);
}
