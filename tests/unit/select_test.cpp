// SPDX-License-Identifier: MIT
// goro::select: case choice and fairness, default/timeout/nil/closed cases, lock ordering, single wake-up, cleanup of waiters and timers.
#include "goro_test.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

using goro_test::parked;
using goro_test::until_parked;

std::size_t pending_timers() { return goro::runtime_metrics().pending_timers; }

// White-box: whether any waiter (a blocked send/recv or a select case) is
// still linked on ch. A select must unlink its losing cases when it returns.
template <class T>
bool has_waiters(const goro::chan<T>& ch) {
  auto* s = goro::detail::state_of(ch);
  goro::detail::spin_guard lock(s->lock);
  return !s->recvq.empty() || !s->sendq.empty();
}

// Resident set size of this process in bytes.
long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// Under TSan the process's resident memory is dominated by the sanitizer's
// shadow and per-thread state, which grow on their own schedule: memory is
// checked in the other builds.
constexpr bool rss_is_meaningful = GORO_TSAN == 0;

double chi_square(const std::vector<long>& counts) {
  long total = 0;
  for (long c : counts) total += c;
  double expected = static_cast<double>(total) / static_cast<double>(counts.size());
  double chi2 = 0;
  for (long c : counts) chi2 += (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected) / expected;
  return chi2;
}

// For 3 degrees of freedom, P(chi2 > 40) is about 1e-8: a uniform choice
// essentially never fails this, any real bias (say 27% vs 25% over 40k
// draws gives ~40) does.
constexpr double chi2_limit_3dof = 40.0;

goro::run_options with_workers(unsigned workers) {
  goro::run_options o;
  o.workers = workers;
  return o;
}

}  // namespace

TEST_CASE("select returns the index of the ready case and runs only that case's function") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> empty{1}, full{1}, room{1};
    full.send(42);
    std::optional<int> got;
    int wrong_calls = 0;
    int k = goro::select(goro::on_recv(empty, [&](std::optional<int>) { ++wrong_calls; }),
                         goro::on_recv(full, [&](std::optional<int> v) { got = v; }),
                         goro::on_default([&] { ++wrong_calls; }));
    CHECK(k == 1);
    CHECK(got == 42);
    CHECK(wrong_calls == 0);
    CHECK(full.size() == 0);

    bool sent = false;
    k = goro::select(goro::on_recv(empty, [&] { ++wrong_calls; }), goro::on_send(room, 7, [&] { sent = true; }));
    CHECK(k == 1);
    CHECK(sent);
    CHECK(room.recv() == 7);

    // Functions are optional, and a receive function may take no argument.
    room.send(1);
    CHECK(goro::select(goro::on_recv(empty), goro::on_recv(room)) == 1);
    CHECK(goro::select(goro::on_send(room, 2), goro::on_recv(empty)) == 0);
    bool called = false;
    CHECK(goro::select(goro::on_recv(room, [&] { called = true; })) == 0);
    CHECK(called);
    CHECK(wrong_calls == 0);
  });
}

TEST_CASE("a send case that is not chosen sends nothing") {
  goro_test::run_in_goro(1, [] {
    goro::chan<int> a{1}, b{1};
    for (int i = 0; i < 200; ++i) {
      int k = goro::select(goro::on_send(a, 1), goro::on_send(b, 2));
      REQUIRE((k == 0 || k == 1));
      CHECK(a.size() + b.size() == 1);
      auto& chosen = k == 0 ? a : b;
      CHECK(chosen.recv() == k + 1);
      CHECK(a.size() + b.size() == 0);
    }
  });
}

TEST_CASE("on_default is taken at once when nothing is ready, and never when something is") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> unbuffered{0}, full{1}, ready{1};
    full.send(0);
    int defaults = 0;
    for (int i = 0; i < 100; ++i)
      CHECK(goro::select(goro::on_recv(unbuffered), goro::on_send(unbuffered, 1), goro::on_send(full, 2),
                         goro::on_default([&] { ++defaults; })) == 3);
    CHECK(defaults == 100);
    CHECK(full.size() == 1);
    for (int i = 0; i < 100; ++i) {
      ready.send(i);
      // The default comes first in argument order and still loses.
      REQUIRE(goro::select(goro::on_default(), goro::on_recv(ready)) == 1);
    }
    CHECK(goro::select(goro::on_default()) == 0);
  });
}

TEST_CASE("without a default, select parks until a case becomes ready") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> a{0}, b{0}, out{0};
    goro::chan<int> result{1};
    goro::spawn({.name = "parked-selector"}, [&] {
      std::optional<int> got;
      int k = goro::select(goro::on_recv(a), goro::on_recv(b, [&](std::optional<int> v) { got = v; }),
                           goro::on_send(out, 5));
      result.send(k * 1000 + got.value_or(-1));
    });
    REQUIRE(until_parked("parked-selector", goro::wait_reason::select));
    CHECK(result.try_recv().status == goro::chan_op::would_block);
    b.send(9);
    CHECK(result.recv() == 1009);

    // And a send case completes when a receiver arrives.
    goro::spawn({.name = "parked-selector"}, [&] {
      int k = goro::select(goro::on_recv(a), goro::on_send(out, 5));
      result.send(k);
    });
    REQUIRE(until_parked("parked-selector", goro::wait_reason::select));
    CHECK(out.recv() == 5);
    CHECK(result.recv() == 1);
  });
}

TEST_CASE("select's wait reason shows in dump_fibers") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> a{0};
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "dumped-selector"}, [&] {
      goro::select(goro::on_recv(a), goro::on_timeout(1h));
      done.done();
    });
    REQUIRE(until_parked("dumped-selector", goro::wait_reason::select));
    std::ostringstream dump;
    goro::dump_fibers(dump);
    INFO(dump.str());
    CHECK(contains(dump.str(), "\"dumped-selector\" [waiting: select,"));
    a.close();
    done.wait();
  });
}

TEST_CASE("on_timeout is taken when nothing becomes ready in time") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> never{0};
    auto start = std::chrono::steady_clock::now();
    bool timed_out = false;
    int k = goro::select(goro::on_recv(never), goro::on_timeout(30ms, [&] { timed_out = true; }));
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(k == 1);
    CHECK(timed_out);
    CHECK(took >= 30ms);
    CHECK(took < 5s);
    CHECK(pending_timers() == 0);

    // Several timeouts: the earliest one is taken.
    start = std::chrono::steady_clock::now();
    k = goro::select(goro::on_timeout(1h), goro::on_recv(never), goro::on_timeout(20ms), goro::on_timeout(10min));
    CHECK(k == 2);
    CHECK(std::chrono::steady_clock::now() - start >= 20ms);

    // A zero or negative timeout expires at once, but a ready channel still wins.
    CHECK(goro::select(goro::on_recv(never), goro::on_timeout(0ms)) == 1);
    CHECK(goro::select(goro::on_recv(never), goro::on_timeout(-5ms)) == 1);
    goro::chan<int> ready{1};
    for (int i = 0; i < 100; ++i) {
      ready.send(i);
      REQUIRE(goro::select(goro::on_timeout(0ms), goro::on_recv(ready)) == 1);
    }
    CHECK(pending_timers() == 0);
  });
}

TEST_CASE("nil channel cases are never ready") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> nil;
    int wrong = 0;
    CHECK(goro::select(goro::on_recv(nil, [&] { ++wrong; }), goro::on_send(nil, 1, [&] { ++wrong; }),
                       goro::on_default()) == 2);
    CHECK(goro::select(goro::on_recv(nil, [&] { ++wrong; }), goro::on_send(nil, 1, [&] { ++wrong; }),
                       goro::on_timeout(10ms)) == 2);
    goro::chan<int> ready{1};
    ready.send(3);
    CHECK(goro::select(goro::on_send(nil, 1, [&] { ++wrong; }), goro::on_recv(ready), goro::on_recv(nil)) == 1);
    // Parked next to a real channel, the nil cases stay out of the way.
    goro::chan<int> result{1};
    goro::spawn({.name = "nil-and-real"}, [&] {
      result.send(goro::select(goro::on_recv(nil), goro::on_send(nil, 2), goro::on_recv(ready)));
    });
    REQUIRE(until_parked("nil-and-real", goro::wait_reason::select));
    ready.send(4);
    CHECK(result.recv() == 2);
    CHECK(wrong == 0);
  });
}

TEST_CASE("select with no cases, or only nil channels, blocks forever") {
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  std::string report;
  goro::run(with_workers(2), [&] {
    goro::spawn({.name = "empty-select"}, [] { goro::select(); });
    goro::spawn({.name = "nil-select"}, [] {
      goro::chan<int> nil;
      goro::select(goro::on_recv(nil), goro::on_send(nil, 1));
    });
    REQUIRE(until_parked("empty-select", goro::wait_reason::select_no_cases));
    REQUIRE(goro_test::eventually([] {
      for (const auto& f : goro::list_fibers())
        if (f.name == "nil-select" && f.state == goro::fiber_state::waiting) return true;
      return false;
    }));
    std::ostringstream dump;
    goro::dump_fibers(dump);
    report = dump.str();
  });
  // Deliberate leak: both were unwound by run().
  const auto unwound = goro::runtime_metrics().unwound_at_shutdown - unwound_before;
  goro::testing::acknowledge_unwound(unwound);
  CHECK(unwound == 2);
  INFO(report);
  CHECK(contains(report, "\"empty-select\" [waiting: select (no cases)"));
  CHECK(goro::to_string(goro::wait_reason::select_no_cases) == "select (no cases)");
}

TEST_CASE("closed channels are always ready in select: receive gets nullopt, send throws") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> closed{0}, never{0};
    closed.close();
    std::optional<int> got = 5;
    CHECK(goro::select(goro::on_recv(never), goro::on_recv(closed, [&](std::optional<int> v) { got = v; })) == 1);
    CHECK_FALSE(got.has_value());

    std::string what;
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "select-sender"}, [&] {
      try {
        goro::select(goro::on_recv(never), goro::on_send(closed, 1));
      } catch (const goro::channel_closed& e) {
        what = e.what();
      }
      done.done();
    });
    done.wait();
    INFO(what);
    CHECK(contains(what, "send on closed channel"));
    CHECK(contains(what, "\"select-sender\""));

    // Closed while the select is parked.
    goro::chan<int> later{0}, later_send{0};
    std::atomic<int> nullopts{0}, throws{0};
    done.add(2);
    goro::spawn({.name = "closed-while-parked"}, [&] {
      goro::select(goro::on_recv(never), goro::on_recv(later, [&](std::optional<int> v) {
                     if (!v) nullopts++;
                   }));
      done.done();
    });
    goro::spawn({.name = "closed-while-parked"}, [&] {
      try {
        goro::select(goro::on_recv(never), goro::on_send(later_send, 1));
      } catch (const goro::channel_closed&) {
        throws++;
      }
      done.done();
    });
    REQUIRE(until_parked("closed-while-parked", goro::wait_reason::select, 2));
    later.close();
    later_send.close();
    done.wait();
    CHECK(nullopts.load() == 1);
    CHECK(throws.load() == 1);
    CHECK_FALSE(has_waiters(never));
  });
}

TEST_CASE("a select does not pair its own send with its own receive") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> c{0};
    CHECK(goro::select(goro::on_send(c, 1), goro::on_recv(c), goro::on_timeout(20ms)) == 2);
    CHECK_FALSE(has_waiters(c));
    // The same channel twice in one select: locked once, woken once.
    goro::chan<int> result{1};
    goro::spawn({.name = "twice-on-one"}, [&] { result.send(goro::select(goro::on_recv(c), goro::on_recv(c))); });
    REQUIRE(until_parked("twice-on-one", goro::wait_reason::select));
    c.send(1);
    int k = result.recv().value_or(-1);
    CHECK((k == 0 || k == 1));
    CHECK_FALSE(has_waiters(c));
  });
}

TEST_CASE("the chosen case's exception propagates after its operation happened") {
  goro_test::run_in_goro(1, [] {
    goro::chan<int> a{1};
    a.send(1);
    CHECK_THROWS_WITH(goro::select(goro::on_recv(a, [](std::optional<int>) { throw std::runtime_error("from case"); })),
                      "from case");
    CHECK(a.size() == 0);  // the value was taken
    CHECK_THROWS_WITH(goro::select(goro::on_send(a, 2, [] { throw std::runtime_error("after send"); })), "after send");
    CHECK(a.recv() == 2);
  });
}

TEST_CASE("select moves move-only values in and out") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<std::unique_ptr<int>> ch{0}, nil;
    goro::wait_group done;
    done.add(1);
    int sum = 0;
    goro::spawn([&] {
      for (;;) {
        std::optional<std::unique_ptr<int>> got;
        goro::select(goro::on_recv(ch, [&](std::optional<std::unique_ptr<int>> p) { got = std::move(p); }),
                     goro::on_recv(nil));
        if (!got) break;
        sum += **got;
      }
      done.done();
    });
    for (int i = 1; i <= 10; ++i) goro::select(goro::on_send(ch, std::make_unique<int>(i)), goro::on_send(nil, nullptr));
    ch.close();
    done.wait();
    CHECK(sum == 55);
  });
}

TEST_CASE("among ready cases select chooses uniformly at random") {
  unsigned workers = GORO_WORKERS();
  const long n = 40000;
  SECTION("four ready receives") {
    goro_test::run_in_goro(workers, [&] {
      std::array<goro::chan<int>, 4> ch{goro::chan<int>{1}, goro::chan<int>{1}, goro::chan<int>{1}, goro::chan<int>{1}};
      for (auto& c : ch) c.send(0);
      std::vector<long> counts(4, 0);
      for (long i = 0; i < n; ++i) {
        int k = goro::select(goro::on_recv(ch[0]), goro::on_recv(ch[1]), goro::on_recv(ch[2]), goro::on_recv(ch[3]));
        counts[static_cast<std::size_t>(k)]++;
        ch[static_cast<std::size_t>(k)].send(0);  // refill: all four stay ready
      }
      double chi2 = chi_square(counts);
      INFO("counts " << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3] << ", chi2 " << chi2);
      CHECK(chi2 < chi2_limit_3dof);
    });
  }
  SECTION("two receives and two sends ready among nil and blocked cases") {
    goro_test::run_in_goro(workers, [&] {
      goro::chan<int> full1{1}, full2{1}, room1{1}, room2{1}, blocked{0}, nil;
      full1.send(0);
      full2.send(0);
      // Ready: 0, 1, 4 and 5. Never ready: 2 (no sender), 3 and 6 (nil).
      std::vector<long> counts(4, 0);
      for (long i = 0; i < n; ++i) {
        int k = goro::select(goro::on_recv(full1), goro::on_send(room1, 1), goro::on_recv(blocked), goro::on_send(nil, 1),
                             goro::on_recv(full2), goro::on_send(room2, 2), goro::on_recv(nil));
        switch (k) {
          case 0: full1.send(0); counts[0]++; break;
          case 1: (void)room1.recv(); counts[1]++; break;
          case 4: full2.send(0); counts[2]++; break;
          case 5: (void)room2.recv(); counts[3]++; break;
          default: FAIL("a case that was never ready was chosen: " << k);
        }
      }
      double chi2 = chi_square(counts);
      INFO("counts " << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3] << ", chi2 " << chi2);
      CHECK(chi2 < chi2_limit_3dof);
    });
  }
  SECTION("from a plain thread") {
    std::array<goro::chan<int>, 4> ch{goro::chan<int>{1}, goro::chan<int>{1}, goro::chan<int>{1}, goro::chan<int>{1}};
    for (auto& c : ch) c.send(0);
    std::vector<long> counts(4, 0);
    std::thread t([&] {
      for (long i = 0; i < n; ++i) {
        int k = goro::select(goro::on_recv(ch[0]), goro::on_recv(ch[1]), goro::on_recv(ch[2]), goro::on_recv(ch[3]));
        counts[static_cast<std::size_t>(k)]++;
        ch[static_cast<std::size_t>(k)].send(0);
      }
    });
    t.join();
    double chi2 = chi_square(counts);
    INFO("counts " << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3] << ", chi2 " << chi2);
    CHECK(chi2 < chi2_limit_3dof);
  }
}

// select's first round only tries each channel's lock and passes over one
// whose lock is held (another operation is mid-way on it). Here a plain
// thread holds the lock of one ready channel while another channel is ready
// too: every select must take the free one without waiting. A select that
// waited for the held lock would get it only when the thread gives up after
// 2 s, and take the held channel's case.
TEST_CASE("select passes over a ready channel whose lock is held when another case is ready") {
  goro_test::run_in_goro(GORO_WORKERS(), [] {
    goro::chan<int> held_ch{1}, free_ch{1};
    goro::detail::spinlock& held_lock = goro::detail::state_of(held_ch)->lock;
    int took_held = 0, rounds = 20;
    for (int r = 0; r < rounds; ++r) {
      held_ch.send(1);
      free_ch.send(2);
      std::atomic<bool> held{false}, done{false};
      std::thread holder([&] {
        held_lock.lock();
        held.store(true);
        const auto give_up = std::chrono::steady_clock::now() + 2s;
        while (!done.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
        held_lock.unlock();
      });
      while (!held.load()) goro::this_fiber::yield();
      int got = 0;
      const int taken = goro::select(goro::on_recv(held_ch, [&](std::optional<int> v) { got = v.value_or(-1); }),
                                     goro::on_recv(free_ch, [&](std::optional<int> v) { got = v.value_or(-1); }));
      done.store(true);
      goro::blocking([&] { holder.join(); });
      if (taken == 0) {
        ++took_held;
        free_ch.recv();
      } else {
        CHECK(got == 2);
        held_ch.recv();
      }
    }
    CHECK(took_held == 0);
  });
}

// ...and when the channel whose lock is held is the only one ready, the
// select waits for that lock and takes it: it is not missed (no timeout).
TEST_CASE("select takes a ready channel whose lock is held once it is the only one ready") {
  goro_test::run_in_goro(GORO_WORKERS(), [] {
    goro::chan<int> held_ch{1}, empty_ch{1};
    goro::detail::spinlock& held_lock = goro::detail::state_of(held_ch)->lock;
    held_ch.send(7);
    std::atomic<bool> held{false};
    std::thread holder([&] {
      held_lock.lock();
      held.store(true);
      std::this_thread::sleep_for(20ms);  // the stimulus: a lock held for a while
      held_lock.unlock();
    });
    while (!held.load()) goro::this_fiber::yield();
    int got = 0;
    const int taken = goro::select(goro::on_recv(held_ch, [&](std::optional<int> v) { got = v.value_or(-1); }),
                                   goro::on_recv(empty_ch, [](std::optional<int>) {}),
                                   goro::on_timeout(10s, [] {}));
    goro::blocking([&] { holder.join(); });
    CHECK(taken == 0);
    CHECK(got == 7);
  });
}

TEST_CASE("a select parked on several channels is woken exactly once when all become ready together") {
  unsigned workers = GORO_WORKERS();
  bool selector_is_thread = GENERATE(false, true);
  const long rounds = goro_test::scaled(500, 30);
  goro_test::run_in_goro(workers, [&] {
    long wrong_values = 0, lost = 0;
    std::vector<long> chosen(4, 0);
    for (long r = 0; r < rounds; ++r) {
      std::array<goro::chan<int>, 4> ch{goro::chan<int>{0}, goro::chan<int>{0}, goro::chan<int>{0}, goro::chan<int>{0}};
      goro::chan<int> result{1};
      auto selector = [&] {
        int got = -1;
        auto take = [&](std::optional<int> v) { got = v.value_or(-2); };
        int k = goro::select(goro::on_recv(ch[0], take), goro::on_recv(ch[1], take), goro::on_recv(ch[2], take),
                             goro::on_recv(ch[3], take));
        result.send(k * 100 + got);
      };
      std::thread thread_selector;
      if (selector_is_thread) {
        thread_selector = std::thread(selector);
      } else {
        goro::spawn({.name = "four-way-selector"}, selector);
        REQUIRE(until_parked("four-way-selector", goro::wait_reason::select));
      }
      // Four senders race to satisfy it.
      goro::wait_group senders;
      senders.add(4);
      for (int i = 0; i < 4; ++i)
        goro::spawn([&, i] {
          ch[static_cast<std::size_t>(i)].send(i);
          senders.done();
        });
      int v = result.recv().value_or(-1);
      if (thread_selector.joinable()) thread_selector.join();  // it has sent its result: done
      int k = v / 100;
      REQUIRE((k >= 0 && k < 4));
      chosen[static_cast<std::size_t>(k)]++;
      if (v % 100 != k) ++wrong_values;
      // The three losers' values are still with their senders, intact.
      for (int i = 0; i < 4; ++i) {
        if (i == k) continue;
        if (ch[static_cast<std::size_t>(i)].recv() != i) ++lost;
      }
      senders.wait();
      for (auto& c : ch) REQUIRE_FALSE(has_waiters(c));
    }
    CHECK(wrong_values == 0);
    CHECK(lost == 0);
  });
}

TEST_CASE("a winning select unlinks its other waiters and cancels its timer") {
  unsigned workers = GORO_WORKERS();
  const long rounds = goro_test::scaled(200, 20);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> a{0}, b{0}, c{0};
    goro::chan<int> result{1};
    for (long r = 0; r < rounds; ++r) {
      REQUIRE(pending_timers() == 0);
      goro::spawn({.name = "three-way-selector"}, [&] {
        int k = goro::select(goro::on_recv(a), goro::on_recv(b), goro::on_send(c, 3), goro::on_timeout(1h));
        // The timer is gone before select returns.
        result.send(pending_timers() == 0 ? k : -1);
      });
      REQUIRE(until_parked("three-way-selector", goro::wait_reason::select));
      // The timer is armed once the fiber has switched out.
      REQUIRE(goro_test::eventually([] { return pending_timers() == 1; }));
      REQUIRE(has_waiters(a));
      REQUIRE(has_waiters(b));
      REQUIRE(has_waiters(c));
      int expected = static_cast<int>(r % 3);
      if (expected == 0) a.send(1);
      if (expected == 1) b.send(2);
      if (expected == 2) REQUIRE(c.recv() == 3);
      REQUIRE(result.recv() == expected);
      CHECK_FALSE(has_waiters(a));
      CHECK_FALSE(has_waiters(b));
      CHECK_FALSE(has_waiters(c));
      CHECK(pending_timers() == 0);
    }
    // After all that, the losing channels work as new.
    goro::wait_group done;
    done.add(1);
    goro::spawn([&] {
      CHECK(b.recv() == 77);
      done.done();
    });
    b.send(77);
    done.wait();
    CHECK(a.try_send(1) == goro::chan_op::would_block);
  });
}

TEST_CASE("a select that times out leaves no waiter and no timer") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> a{0}, b{4};
    for (int i = 0; i < 20; ++i) {
      CHECK(goro::select(goro::on_recv(a), goro::on_recv(b), goro::on_timeout(1ms)) == 2);
      CHECK_FALSE(has_waiters(a));
      CHECK_FALSE(has_waiters(b));
      CHECK(pending_timers() == 0);
    }
  });
}

TEST_CASE("a million selects with a ready channel and on_timeout(1h) leave no pending timer and flat memory") {
  const long n = goro_test::scaled(1'000'000, 10'000);
  goro_test::run_in_goro(2, [&] {
    goro::chan<long> ch{1};
    long sum = 0;
    long timers_seen = 0;
    auto round = [&](long i) {
      ch.send(i);
      goro::select(goro::on_recv(ch, [&](std::optional<long> v) { sum += v.value_or(0); }), goro::on_timeout(1h));
      if ((i & 1023) == 0 && pending_timers() != 0) ++timers_seen;
      if ((i & 4095) == 0) goro::yield();  // a long loop that never blocks: let the worker breathe
    };
    const long warmup = n / 10;
    for (long i = 0; i < warmup; ++i) round(i);
    const long rss_before = resident_bytes();
    for (long i = warmup; i < n; ++i) round(i);
    const long grown = resident_bytes() - rss_before;
    CHECK(sum == n * (n - 1) / 2);
    CHECK(timers_seen == 0);
    CHECK(pending_timers() == 0);
    INFO("RSS grew by " << grown << " bytes over " << n - warmup << " selects");
    if (rss_is_meaningful) CHECK(grown < 4 * 1024 * 1024);  // 4 bytes per select would already be 3.6 MiB
  });
}

TEST_CASE("selects that park with on_timeout(1h) and are woken by a channel leave no pending timer and flat memory") {
  unsigned workers = GORO_WORKERS();
  const long n = goro_test::scaled(200'000, 5'000);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<long> ch{0};
    goro::spawn([&] {
      for (long i = 0; i < n; ++i) ch.send(i);
    });
    long sum = 0, timeouts = 0, timers_seen = 0;
    long rss_before = 0;
    for (long i = 0; i < n; ++i) {
      if (i == n / 10) rss_before = resident_bytes();
      int k = goro::select(goro::on_recv(ch, [&](std::optional<long> v) { sum += v.value_or(0); }),
                           goro::on_timeout(1h, [&] { ++timeouts; }));
      (void)k;
      if ((i & 63) == 0 && pending_timers() != 0) ++timers_seen;
    }
    const long grown = resident_bytes() - rss_before;
    CHECK(sum == n * (n - 1) / 2);
    CHECK(timeouts == 0);
    CHECK(timers_seen == 0);
    CHECK(pending_timers() == 0);
    CHECK_FALSE(has_waiters(ch));
    INFO("RSS grew by " << grown << " bytes");
    if (rss_is_meaningful) CHECK(grown < 4 * 1024 * 1024);
  });
}

TEST_CASE("selects over the same channels in opposite orders never deadlock") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 2u);
  const int fibers_per_side = 8;
  const long ops = goro_test::scaled(3000, 100);
  goro_test::run_in_goro(workers, [&] {
    // Side X sends on a or receives from b; side Y sends on b or receives
    // from a; each side lists its cases in a random order every time. Every
    // X operation pairs with a Y operation, both sides do the same number,
    // so all of them complete unless two selects deadlock on the locks.
    goro::chan<long> a{capacity}, b{capacity};
    const int actors_per_side = fibers_per_side + 1;  // + one plain thread
    const long total = 2L * actors_per_side * ops;
    std::vector<std::atomic<int>> received(static_cast<std::size_t>(total));
    std::vector<std::atomic<int>> sent(static_cast<std::size_t>(total));
    std::atomic<long> bad{0};
    auto actor = [&](bool side_x, long id_base, unsigned seed) {
      std::minstd_rand rng(seed);
      for (long i = 0; i < ops; ++i) {
        long id = id_base + i;
        auto on_value = [&](std::optional<long> v) {
          if (!v || *v < 0 || *v >= total) {
            bad++;
            return;
          }
          received[static_cast<std::size_t>(*v)].fetch_add(1);
        };
        auto mark_sent = [&] { sent[static_cast<std::size_t>(id)].store(1); };
        goro::chan<long>& out = side_x ? a : b;
        goro::chan<long>& in = side_x ? b : a;
        if (rng() % 2 == 0)
          goro::select(goro::on_send(out, id, mark_sent), goro::on_recv(in, on_value));
        else
          goro::select(goro::on_recv(in, on_value), goro::on_send(out, id, mark_sent));
      }
    };
    goro::wait_group done;
    done.add(2 * fibers_per_side + 2);
    for (int f = 0; f < fibers_per_side; ++f) {
      goro::spawn([&, f] {
        actor(true, 2L * f * ops, 1000u + static_cast<unsigned>(f));
        done.done();
      });
      goro::spawn([&, f] {
        actor(false, (2L * f + 1) * ops, 2000u + static_cast<unsigned>(f));
        done.done();
      });
    }
    std::thread tx([&] {
      actor(true, 2L * fibers_per_side * ops, 7u);
      done.done();
    });
    std::thread ty([&] {
      actor(false, (2L * fibers_per_side + 1) * ops, 8u);
      done.done();
    });
    done.wait();
    tx.join();
    ty.join();
    // Whatever is still buffered was sent too.
    for (auto* c : {&a, &b})
      while (auto r = c->try_recv()) received[static_cast<std::size_t>(*r.value)].fetch_add(1);
    long mismatches = 0;
    for (long id = 0; id < total; ++id)
      if (received[static_cast<std::size_t>(id)].load() != sent[static_cast<std::size_t>(id)].load()) ++mismatches;
    CHECK(bad.load() == 0);
    CHECK(mismatches == 0);
  });
}

TEST_CASE("selects over three channels in all six orders never deadlock") {
  unsigned workers = GORO_WORKERS();
  const int senders = 6, receivers = 6;
  const long ops = goro_test::scaled(3000, 100);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<long> a{0}, b{1}, c{0};
    std::atomic<long> sent_sum{0}, received_sum{0}, received_count{0};
    goro::wait_group done;
    done.add(senders + receivers);
    for (int s = 0; s < senders; ++s)
      goro::spawn([&, s] {
        for (long i = 0; i < ops; ++i) {
          long v = s * ops + i + 1;
          auto sent = [&] { sent_sum.fetch_add(v); };
          switch ((i + s) % 6) {
            case 0: goro::select(goro::on_send(a, v, sent), goro::on_send(b, v, sent), goro::on_send(c, v, sent)); break;
            case 1: goro::select(goro::on_send(a, v, sent), goro::on_send(c, v, sent), goro::on_send(b, v, sent)); break;
            case 2: goro::select(goro::on_send(b, v, sent), goro::on_send(a, v, sent), goro::on_send(c, v, sent)); break;
            case 3: goro::select(goro::on_send(b, v, sent), goro::on_send(c, v, sent), goro::on_send(a, v, sent)); break;
            case 4: goro::select(goro::on_send(c, v, sent), goro::on_send(a, v, sent), goro::on_send(b, v, sent)); break;
            default: goro::select(goro::on_send(c, v, sent), goro::on_send(b, v, sent), goro::on_send(a, v, sent)); break;
          }
        }
        done.done();
      });
    for (int r = 0; r < receivers; ++r)
      goro::spawn([&, r] {
        auto got = [&](std::optional<long> v) {
          received_sum.fetch_add(v.value_or(0));
          received_count.fetch_add(1);
        };
        for (long i = 0; i < ops; ++i) {
          switch ((i + r) % 6) {
            case 0: goro::select(goro::on_recv(c, got), goro::on_recv(b, got), goro::on_recv(a, got)); break;
            case 1: goro::select(goro::on_recv(c, got), goro::on_recv(a, got), goro::on_recv(b, got)); break;
            case 2: goro::select(goro::on_recv(b, got), goro::on_recv(c, got), goro::on_recv(a, got)); break;
            case 3: goro::select(goro::on_recv(b, got), goro::on_recv(a, got), goro::on_recv(c, got)); break;
            case 4: goro::select(goro::on_recv(a, got), goro::on_recv(c, got), goro::on_recv(b, got)); break;
            default: goro::select(goro::on_recv(a, got), goro::on_recv(b, got), goro::on_recv(c, got)); break;
          }
        }
        done.done();
      });
    done.wait();
    const long n = senders * ops;
    CHECK(received_count.load() == n);
    CHECK(sent_sum.load() == n * (n + 1) / 2);
    CHECK(received_sum.load() == sent_sum.load());
  });
}

TEST_CASE("a plain thread can select: ready, timeout, and woken by fibers or close") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> a{0}, b{0}, ready{1};
    ready.send(1);
    std::atomic<int> step{0};
    // What the thread saw; checked on the test's fiber after it is done.
    int ready_index = -1, default_index = -1, timeout_index = -1, send_woken = -1, recv_woken = -1, close_woken = -1;
    bool waiters_after_timeout = true;
    std::chrono::steady_clock::duration timeout_took{};
    std::optional<int> got, at_close = 0;
    goro::wait_group finished;
    finished.add(1);
    std::thread t([&] {
      ready_index = goro::select(goro::on_recv(a), goro::on_recv(ready));
      default_index = goro::select(goro::on_recv(a), goro::on_default());
      auto start = std::chrono::steady_clock::now();
      timeout_index = goro::select(goro::on_recv(a), goro::on_timeout(20ms));
      timeout_took = std::chrono::steady_clock::now() - start;
      waiters_after_timeout = has_waiters(a);
      step = 1;  // parks, woken by a fiber's send
      send_woken = goro::select(goro::on_recv(a, [&](std::optional<int> v) { got = v; }), goro::on_timeout(1h));
      step = 2;  // parks, woken by a fiber's receive
      recv_woken = goro::select(goro::on_recv(a), goro::on_send(b, 8));
      step = 3;  // parks, woken by close
      close_woken = goro::select(goro::on_recv(a, [&](std::optional<int> v) { at_close = v; }), goro::on_recv(ready));
      finished.done();
    });
    bool reached1 = goro_test::eventually([&] { return step.load() == 1 && has_waiters(a); });
    if (reached1) a.send(6);
    bool reached2 = reached1 && goro_test::eventually([&] { return step.load() == 2 && has_waiters(b); });
    std::optional<int> from_b;
    if (reached2) from_b = b.recv();
    bool reached3 = reached2 && goro_test::eventually([&] { return step.load() == 3 && has_waiters(a); });
    a.close();  // also releases the thread if a step was missed
    finished.wait();
    t.join();
    CHECK(reached1);
    CHECK(reached2);
    CHECK(reached3);
    CHECK(ready_index == 1);
    CHECK(default_index == 1);
    CHECK(timeout_index == 1);
    CHECK(timeout_took >= 20ms);
    CHECK_FALSE(waiters_after_timeout);
    CHECK(send_woken == 0);
    CHECK(got == 6);
    CHECK(recv_woken == 1);
    CHECK(from_b == 8);
    CHECK(close_woken == 0);
    CHECK_FALSE(at_close.has_value());
    CHECK(pending_timers() == 0);
  });
}
