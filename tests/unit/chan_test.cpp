// SPDX-License-Identifier: MIT
// goro::chan<T>: rendezvous and buffered delivery, try_ ops, close rules, nil channels, move-only values, fibers and threads, diagnostics.
#include "goro_test.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

using goro_test::parked;
using goro_test::until_parked;

goro::run_options with_workers(unsigned workers) {
  goro::run_options o;
  o.workers = workers;
  return o;
}

// A move-only element without a default constructor that counts its live
// instances, so a channel that loses, duplicates or leaks a value shows.
struct tracked {
  static std::atomic<long>& live() {
    static std::atomic<long> n{0};
    return n;
  }
  explicit tracked(int v) : value(v) { live().fetch_add(1); }
  tracked(tracked&& other) noexcept : value(std::exchange(other.value, -1)) { live().fetch_add(1); }
  tracked(const tracked&) = delete;
  tracked& operator=(const tracked&) = delete;
  tracked& operator=(tracked&&) = delete;
  ~tracked() { live().fetch_sub(1); }
  int value;  // -1: moved from
};
static_assert(!std::is_default_constructible_v<tracked>);
static_assert(!std::is_copy_constructible_v<tracked>);

// Counts destructor runs: how many fibers run() unwound.
struct count_unwind {
  std::atomic<int>* n;
  ~count_unwind() { n->fetch_add(1); }
};

// Runs `release` from a plain thread after `limit` unless stop() comes
// first: turns a detector that never fires into a failed test, not a hang.
class watchdog {
 public:
  watchdog(std::function<void()> release, std::chrono::milliseconds limit)
      : thread_([this, release = std::move(release), limit] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return stopped_; })) {
            fired_ = true;
            lock.unlock();
            release();
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

TEST_CASE("an unbuffered send waits until a receiver takes the value") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{0};
    CHECK(ch.capacity() == 0);
    std::atomic<bool> returned{false};
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "rendezvous-sender"}, [&] {
      ch.send(7);
      returned = true;
      done.done();
    });
    REQUIRE(until_parked("rendezvous-sender", goro::wait_reason::chan_send));
    CHECK_FALSE(returned.load());
    CHECK(ch.size() == 0);  // an unbuffered channel holds nothing
    CHECK(ch.recv() == 7);
    done.wait();
    CHECK(returned.load());
  });
}

TEST_CASE("an unbuffered receive waits until a sender arrives") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<std::string> ch{0};
    std::optional<std::string> got;
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "rendezvous-receiver"}, [&] {
      got = ch.recv();
      done.done();
    });
    REQUIRE(until_parked("rendezvous-receiver", goro::wait_reason::chan_receive));
    CHECK_FALSE(got.has_value());
    ch.send(std::string(1000, 'r'));  // long enough to live on the heap
    done.wait();
    REQUIRE(got.has_value());
    CHECK(*got == std::string(1000, 'r'));
  });
}

TEST_CASE("a buffered channel takes capacity values without blocking and keeps them in FIFO order") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{5};
    CHECK(ch.capacity() == 5);
    CHECK(ch.size() == 0);
    for (int i = 0; i < 5; ++i) {
      ch.send(i);  // never blocks: the main fiber would deadlock here otherwise
      CHECK(ch.size() == static_cast<std::size_t>(i + 1));
    }
    CHECK(ch.try_send(99) == goro::chan_op::would_block);
    CHECK(ch.size() == 5);
    for (int i = 0; i < 5; ++i) {
      CHECK(ch.recv() == i);
      CHECK(ch.size() == static_cast<std::size_t>(4 - i));
    }
    CHECK(ch.try_recv().status == goro::chan_op::would_block);
    // The ring wraps around many times and stays in order.
    for (int round = 0; round < 100; ++round) {
      for (int i = 0; i < 3; ++i) REQUIRE(ch.try_send(round * 3 + i) == goro::chan_op::ok);
      for (int i = 0; i < 3; ++i) REQUIRE(ch.recv() == round * 3 + i);
    }
  });
}

TEST_CASE("senders blocked on a full buffer join it in arrival order") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{2};
    ch.send(0);
    ch.send(1);
    goro::wait_group done;
    // Each sender is started only once the previous one is queued, so their
    // arrival order is known.
    for (int v = 2; v < 6; ++v) {
      done.add(1);
      goro::spawn({.name = "full-buffer-sender"}, [&, v] {
        ch.send(v);
        done.done();
      });
      REQUIRE(until_parked("full-buffer-sender", goro::wait_reason::chan_send, static_cast<std::size_t>(v - 1)));
    }
    CHECK(ch.size() == 2);
    for (int v = 0; v < 6; ++v) CHECK(ch.recv() == v);
    done.wait();
    CHECK(ch.size() == 0);
  });
}

TEST_CASE("blocked receivers are served in arrival order") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 3u);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> ch{capacity};
    constexpr int n = 5;
    std::vector<int> got(n, -1);
    goro::wait_group done;
    for (int i = 0; i < n; ++i) {
      done.add(1);
      goro::spawn({.name = "queued-receiver"}, [&, i] {
        got[i] = ch.recv().value_or(-2);
        done.done();
      });
      REQUIRE(until_parked("queued-receiver", goro::wait_reason::chan_receive, static_cast<std::size_t>(i + 1)));
    }
    for (int i = 0; i < n; ++i) ch.send(i * 10);
    done.wait();
    for (int i = 0; i < n; ++i) CHECK(got[i] == i * 10);
  });
}

TEST_CASE("try_send and try_recv tell would-block from closed") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    SECTION("unbuffered") {
      goro::chan<int> ch{0};
      CHECK(ch.try_send(1) == goro::chan_op::would_block);  // nobody receiving
      auto r = ch.try_recv();
      CHECK(r.status == goro::chan_op::would_block);        // nobody sending
      CHECK_FALSE(r);
      CHECK_FALSE(r.value.has_value());

      // With a parked receiver, try_send hands over directly.
      goro::wait_group done;
      done.add(1);
      std::optional<int> got;
      goro::spawn({.name = "try-partner"}, [&] {
        got = ch.recv();
        done.done();
      });
      REQUIRE(until_parked("try-partner", goro::wait_reason::chan_receive));
      CHECK(ch.try_send(5) == goro::chan_op::ok);
      done.wait();
      CHECK(got == 5);

      // With a parked sender, try_recv takes its value.
      done.add(1);
      goro::spawn({.name = "try-partner"}, [&] {
        ch.send(6);
        done.done();
      });
      REQUIRE(until_parked("try-partner", goro::wait_reason::chan_send));
      auto r2 = ch.try_recv();
      CHECK(r2.status == goro::chan_op::ok);
      CHECK(r2);
      CHECK(r2.value == 6);
      done.wait();

      ch.close();
      CHECK(ch.try_send(1) == goro::chan_op::closed);
      CHECK(ch.try_recv().status == goro::chan_op::closed);
      CHECK_FALSE(ch.try_recv().value.has_value());
    }
    SECTION("buffered") {
      goro::chan<int> ch{2};
      CHECK(ch.try_recv().status == goro::chan_op::would_block);
      CHECK(ch.try_send(1) == goro::chan_op::ok);
      CHECK(ch.try_send(2) == goro::chan_op::ok);
      CHECK(ch.try_send(3) == goro::chan_op::would_block);
      ch.close();
      CHECK(ch.try_send(3) == goro::chan_op::closed);  // closed wins over full
      auto a = ch.try_recv();
      CHECK(a.status == goro::chan_op::ok);
      CHECK(a.value == 1);
      auto b = ch.try_recv();
      CHECK(b.status == goro::chan_op::ok);
      CHECK(b.value == 2);
      CHECK(ch.try_recv().status == goro::chan_op::closed);
    }
  });
}

TEST_CASE("move-only values travel through every operation, and failed try_send keeps them") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 4u);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<std::unique_ptr<int>> ch{capacity};
    goro::wait_group done;
    done.add(1);
    std::vector<int> got;
    goro::spawn([&] {
      for (auto& p : ch) got.push_back(p ? *p : -1);
      done.done();
    });
    for (int i = 0; i < 10; ++i) ch.send(std::make_unique<int>(i));
    // try_send moves from its argument only when it succeeds.
    auto keep = std::make_unique<int>(10);
    while (ch.try_send(std::move(keep)) == goro::chan_op::would_block) {
      REQUIRE(keep);  // still ours
      CHECK(*keep == 10);
      goro::yield();
    }
    CHECK_FALSE(keep);  // sent
    ch.close();
    auto refused = std::make_unique<int>(11);
    CHECK(ch.try_send(std::move(refused)) == goro::chan_op::closed);
    REQUIRE(refused);
    CHECK(*refused == 11);
    CHECK_THROWS_AS(ch.send(std::make_unique<int>(12)), goro::channel_closed);
    done.wait();
    std::vector<int> expected{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(got == expected);
  });
}

TEST_CASE("each value is moved through exactly once and buffered leftovers die with the channel") {
  unsigned workers = GORO_WORKERS();
  const long live_before = tracked::live().load();
  goro_test::run_in_goro(workers, [] {
    {
      goro::chan<tracked> ch{8};
      for (int i = 0; i < 8; ++i) ch.send(tracked(i));
      CHECK(tracked::live().load() >= 8);
      for (int i = 0; i < 3; ++i) {
        auto v = ch.recv();
        REQUIRE(v);
        CHECK(v->value == i);
      }
      // Five stay buffered; the last handle goes away with them.
      auto copy = ch;
    }
    {
      goro::chan<tracked> ch{0};
      goro::wait_group done;
      done.add(1);
      long sum = 0;
      goro::spawn([&] {
        while (auto v = ch.recv()) sum += v->value;
        done.done();
      });
      for (int i = 1; i <= 100; ++i) ch.send(tracked(i));
      ch.close();
      done.wait();
      CHECK(sum == 5050);
    }
  });
  CHECK(tracked::live().load() == live_before);
}

TEST_CASE("zero-size element types work buffered and unbuffered") {
  struct empty {};
  goro_test::run_in_goro(2, [] {
    goro::chan<empty> unbuffered{0};
    goro::chan<empty> buffered{3};
    goro::chan<std::array<char, 0>> zero_array{1};
    for (int i = 0; i < 3; ++i) CHECK(buffered.try_send(empty{}) == goro::chan_op::ok);
    CHECK(buffered.try_send(empty{}) == goro::chan_op::would_block);
    CHECK(buffered.size() == 3);
    CHECK(zero_array.try_send(std::array<char, 0>{}) == goro::chan_op::ok);
    CHECK(zero_array.recv().has_value());
    goro::wait_group done;
    done.add(1);
    int received = 0;
    goro::spawn([&] {
      for (auto e : unbuffered) {
        (void)e;
        ++received;
      }
      done.done();
    });
    for (int i = 0; i < 50; ++i) unbuffered.send(empty{});
    unbuffered.close();
    done.wait();
    CHECK(received == 50);
  });
}

TEST_CASE("a closed channel delivers its buffered values, then nullopt at once, forever") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{4};
    ch.send(1);
    ch.send(2);
    ch.send(3);
    ch.close();
    CHECK(ch.closed());
    CHECK(ch.size() == 3);
    CHECK(ch.recv() == 1);
    CHECK(ch.try_recv().value == 2);
    CHECK(ch.recv() == 3);
    for (int i = 0; i < 1000; ++i) REQUIRE_FALSE(ch.recv().has_value());  // never blocks
    int iterations = 0;
    for (int v : ch) {
      (void)v;
      ++iterations;
    }
    CHECK(iterations == 0);
  });
}

TEST_CASE("send on a closed channel throws channel_closed naming the fiber or thread") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{1};
    ch.close();
    std::string from_fiber, from_thread;
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "late-sender"}, [&] {
      try {
        ch.send(1);
      } catch (const goro::channel_closed& e) {
        from_fiber = e.what();
      }
      done.done();
    });
    done.wait();
    std::thread t([&] {
      try {
        ch.send(2);
      } catch (const goro::channel_closed& e) {
        from_thread = e.what();
      }
    });
    t.join();
    INFO(from_fiber);
    CHECK(contains(from_fiber, "send on closed channel"));
    CHECK(contains(from_fiber, "\"late-sender\""));
    CHECK(contains(from_fiber, "chan_test.cpp"));  // the spawn site
    INFO(from_thread);
    CHECK(contains(from_thread, "send on closed channel"));
    CHECK(contains(from_thread, "plain thread"));
    CHECK(ch.try_recv().status == goro::chan_op::closed);  // nothing got in
  });
}

TEST_CASE("closing twice throws channel_closed; closing a nil channel is a misuse") {
  goro_test::run_in_goro(1, [] {
    goro::chan<int> ch{0};
    ch.close();
    std::string what;
    try {
      ch.close();
    } catch (const goro::channel_closed& e) {
      what = e.what();
    }
    CHECK(contains(what, "close of closed channel"));
    CHECK(contains(what, "\"main\""));
    goro::chan<int> nil;
    CHECK_THROWS_AS(nil.close(), goro::misuse_error);
    // channel_closed is a goro::error too, and not a misuse_error.
    CHECK_THROWS_AS(ch.close(), goro::error);
    static_assert(!std::is_base_of_v<goro::misuse_error, goro::channel_closed>);
  });
}

TEST_CASE("close wakes every blocked receiver with nullopt") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 2u);
  bool close_from_thread = GENERATE(false, true);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> ch{capacity};
    constexpr int n = 16;
    std::atomic<int> got_nullopt{0};
    goro::wait_group done;
    done.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "closing-receiver"}, [&] {
        if (!ch.recv().has_value()) got_nullopt.fetch_add(1);
        done.done();
      });
    REQUIRE(until_parked("closing-receiver", goro::wait_reason::chan_receive, n));
    if (close_from_thread) {
      std::thread t([&] { ch.close(); });
      t.join();
    } else {
      ch.close();
    }
    done.wait();
    CHECK(got_nullopt.load() == n);
  });
}

TEST_CASE("close wakes every blocked sender, which throws channel_closed") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 3u);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> ch{capacity};
    for (std::size_t i = 0; i < capacity; ++i) ch.send(100 + static_cast<int>(i));  // full
    constexpr int n = 16;
    std::atomic<int> threw{0};
    std::atomic<int> returned{0};
    goro::wait_group done;
    done.add(n);
    for (int i = 0; i < n; ++i)
      goro::spawn({.name = "closing-sender"}, [&, i] {
        try {
          ch.send(i);
          returned.fetch_add(1);
        } catch (const goro::channel_closed& e) {
          if (contains(e.what(), "\"closing-sender\"")) threw.fetch_add(1);
        }
        done.done();
      });
    REQUIRE(until_parked("closing-sender", goro::wait_reason::chan_send, n));
    ch.close();
    done.wait();
    CHECK(threw.load() == n);
    CHECK(returned.load() == 0);
    // The buffered values are still delivered; no blocked sender's value got in.
    for (std::size_t i = 0; i < capacity; ++i) CHECK(ch.recv() == 100 + static_cast<int>(i));
    CHECK_FALSE(ch.recv().has_value());
  });
}

TEST_CASE("a nil channel never delivers: try ops would block, send and recv block forever") {
  unsigned workers = GORO_WORKERS();
  goro::chan<int> nil;
  CHECK(nil.is_nil());
  CHECK_FALSE(nil);
  CHECK(nil.capacity() == 0);
  CHECK(nil.size() == 0);
  CHECK_FALSE(nil.closed());
  CHECK(nil.try_send(1) == goro::chan_op::would_block);
  CHECK(nil.try_recv().status == goro::chan_op::would_block);
  CHECK(nil == goro::chan<int>{});

  // Two fibers block on it for good: the leak checker names them while the
  // runtime runs, and run() unwinds them (a deliberate leak, acknowledged).
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  std::atomic<int> unwound{0};
  std::string report;
  goro::run(with_workers(workers), [&] {
    goro::spawn({.name = "nil-sender"}, [&, nil] {
      count_unwind guard{&unwound};
      nil.send(1);
    });
    goro::spawn({.name = "nil-receiver"}, [&, nil] {
      count_unwind guard{&unwound};
      (void)nil.recv();
    });
    REQUIRE(until_parked("nil-sender", goro::wait_reason::chan_send));
    REQUIRE(until_parked("nil-receiver", goro::wait_reason::chan_receive));
    try {
      goro::testing::expect_no_leaked_fibers(50ms);
    } catch (const goro::testing::leaked_fibers_error& e) {
      report = e.what();
    }
  });
  const auto unwound_now = goro::runtime_metrics().unwound_at_shutdown;
  goro::testing::acknowledge_unwound(unwound_now - unwound_before);
  CHECK(unwound_now - unwound_before == 2);
  CHECK(unwound.load() == 2);
  INFO(report);
  CHECK(contains(report, "2 leaked fiber(s)"));
  CHECK(contains(report, "\"nil-sender\" [waiting: chan send"));
  CHECK(contains(report, "\"nil-receiver\" [waiting: chan receive"));
}

TEST_CASE("a channel is a shared handle: copies are the same channel") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> a{1};
    goro::chan<int> b = a;
    CHECK(a == b);
    CHECK_FALSE(a == goro::chan<int>{1});
    CHECK(static_cast<bool>(a));
    CHECK_FALSE(a.is_nil());
    b.send(3);
    CHECK(a.size() == 1);
    CHECK(a.recv() == 3);
    b.close();
    CHECK(a.closed());

    // A copy keeps the channel alive after the original handle is gone.
    goro::chan<int> survivor;
    {
      goro::chan<int> original{2};
      original.send(8);
      survivor = original;
    }
    CHECK(survivor.recv() == 8);

    // Handles are cheap enough to pass by value into many fibers.
    goro::chan<int> results{0};
    goro::wait_group done;
    done.add(100);
    for (int i = 0; i < 100; ++i)
      goro::spawn([results, i, &done] {
        results.send(i);
        done.done();
      });
    long sum = 0;
    for (int i = 0; i < 100; ++i) sum += results.recv().value_or(-1000);
    done.wait();
    CHECK(sum == 4950);
  });
}

TEST_CASE("range-for receives until the channel is closed and drained") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 1u, 16u);
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> ch{capacity};
    goro::spawn([ch] {
      for (int i = 0; i < 1000; ++i) ch.send(i);
      ch.close();
    });
    int expected = 0;
    bool in_order = true;
    for (int v : ch) {
      if (v != expected) in_order = false;
      ++expected;
    }
    CHECK(in_order);
    CHECK(expected == 1000);
  });
}

TEST_CASE("many producers and consumers deliver every value exactly once, in order per producer") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 1u, 64u);
  const int producers = 8, consumers = 8;
  const int per_producer = static_cast<int>(goro_test::scaled(5000, 200));
  goro_test::run_in_goro(workers, [&] {
    goro::chan<long> ch{capacity};
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(producers * per_producer));
    std::atomic<long> out_of_order{0};
    goro::wait_group produced, consumed;
    produced.add(producers);
    consumed.add(consumers);
    for (int p = 0; p < producers; ++p)
      goro::spawn([&, p] {
        for (int i = 0; i < per_producer; ++i) ch.send(static_cast<long>(p) * per_producer + i);
        produced.done();
      });
    for (int c = 0; c < consumers; ++c)
      goro::spawn([&] {
        std::vector<long> last(producers, -1);
        for (long v : ch) {
          seen[static_cast<std::size_t>(v)].fetch_add(1, std::memory_order_relaxed);
          long p = v / per_producer, i = v % per_producer;
          if (i <= last[static_cast<std::size_t>(p)]) out_of_order.fetch_add(1);
          last[static_cast<std::size_t>(p)] = i;
        }
        consumed.done();
      });
    produced.wait();
    ch.close();
    consumed.wait();
    long wrong = 0;
    for (auto& s : seen)
      if (s.load() != 1) ++wrong;
    CHECK(wrong == 0);
    CHECK(out_of_order.load() == 0);
  });
}

TEST_CASE("fibers and plain threads exchange values in any mix") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 4u);
  const int n = static_cast<int>(goro_test::scaled(5000, 200));
  goro_test::run_in_goro(workers, [&] {
    goro::chan<int> to_fibers{capacity}, to_threads{capacity}, results{capacity};
    // Threads produce for fibers; fibers produce for threads; both report
    // what they got on `results`, which a third thread and the main fiber share.
    std::thread thread_producer([&] {
      for (int i = 0; i < n; ++i) to_fibers.send(i);
      to_fibers.close();
    });
    goro::wait_group fibers_done;
    fibers_done.add(2);
    goro::spawn([&] {  // fiber consumer of the thread's values
      long sum = 0;
      for (int v : to_fibers) sum += v;
      results.send(static_cast<int>(sum % 1000003));
      fibers_done.done();
    });
    goro::spawn([&] {  // fiber producer for the threads
      for (int i = 0; i < n; ++i) to_threads.send(i);
      to_threads.close();
      fibers_done.done();
    });
    std::thread thread_consumer([&] {
      long sum = 0;
      for (int v : to_threads) sum += v;
      results.send(static_cast<int>(sum % 1000003));
    });
    long expected = static_cast<long>(n) * (n - 1) / 2 % 1000003;
    CHECK(results.recv() == expected);
    CHECK(results.recv() == expected);
    fibers_done.wait();
    thread_producer.join();
    thread_consumer.join();
  });
}

TEST_CASE("plain threads use channels with no runtime at all") {
  goro::chan<int> ping{0}, pong{0};
  const int rounds = static_cast<int>(goro_test::scaled(2000, 100));
  int bad = 0;
  std::thread a([&] {
    for (int i = 0; i < rounds; ++i) {
      ping.send(i);
      if (pong.recv() != i + 1) ++bad;
    }
    ping.close();
  });
  int last = -1;
  for (;;) {
    auto v = ping.recv();
    if (!v) break;
    last = *v;
    pong.send(*v + 1);
  }
  a.join();
  CHECK(bad == 0);
  CHECK(last == rounds - 1);
  CHECK_THROWS_AS(ping.send(1), goro::channel_closed);
}

TEST_CASE("a send happens-before the receive that gets its value; close happens-before seeing it") {
  unsigned workers = GORO_WORKERS();
  std::size_t capacity = GENERATE(0u, 8u);
  // Plain (non-atomic) data handed over through the channel: TSan reports a
  // race if the channel does not order the writer before the reader.
  struct payload {
    int numbers[16];
  };
  goro_test::run_in_goro(workers, [&] {
    goro::chan<payload*> ch{capacity};
    std::vector<payload> store(200);
    int after_close = 0;  // written before close(), read after seeing it closed
    goro::spawn([&] {
      for (std::size_t i = 0; i < store.size(); ++i) {
        for (int k = 0; k < 16; ++k) store[i].numbers[k] = static_cast<int>(i) + k;
        ch.send(&store[i]);
      }
      after_close = 42;
      ch.close();
    });
    // A plain thread reads (no Catch assertions off the test's own fiber);
    // the main fiber waits for it without blocking its worker.
    int bad = 0;
    std::size_t count = 0;
    int seen_after_close = 0;
    goro::wait_group read;
    read.add(1);
    std::thread reader([&] {
      for (payload* p : ch) {
        for (int k = 0; k < 16; ++k)
          if (p->numbers[k] != static_cast<int>(count) + k) ++bad;
        ++count;
      }
      seen_after_close = after_close;
      read.done();
    });
    read.wait();
    reader.join();
    CHECK(bad == 0);
    CHECK(count == store.size());
    CHECK(seen_after_close == 42);
  });
}

TEST_CASE("wait reasons 'chan send' and 'chan receive' show in dump_fibers") {
  goro_test::run_in_goro(2, [] {
    goro::chan<int> in{0}, out{0};
    goro::wait_group done;
    done.add(2);
    goro::spawn({.name = "dump-sender"}, [&] {
      out.send(1);
      done.done();
    });
    goro::spawn({.name = "dump-receiver"}, [&] {
      (void)in.recv();
      done.done();
    });
    REQUIRE(until_parked("dump-sender", goro::wait_reason::chan_send));
    REQUIRE(until_parked("dump-receiver", goro::wait_reason::chan_receive));
    std::ostringstream dump;
    goro::dump_fibers(dump);
    INFO(dump.str());
    CHECK(contains(dump.str(), "\"dump-sender\" [waiting: chan send"));
    CHECK(contains(dump.str(), "\"dump-receiver\" [waiting: chan receive"));
    CHECK(goro::to_string(goro::wait_reason::chan_send) == "chan send");
    CHECK(goro::to_string(goro::wait_reason::chan_receive) == "chan receive");
    CHECK(out.recv() == 1);
    in.send(2);
    done.wait();
  });
}

TEST_CASE("a fiber blocked on a channel is reported by the leak checker") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::chan<int> ch{0};
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "forgotten-receiver"}, [&] {
      (void)ch.recv();
      done.done();
    });
    REQUIRE(until_parked("forgotten-receiver", goro::wait_reason::chan_receive));
    std::string report;
    try {
      goro::testing::expect_no_leaked_fibers(20ms);
    } catch (const goro::testing::leaked_fibers_error& e) {
      report = e.what();
    }
    INFO(report);
    CHECK(contains(report, "1 leaked fiber(s)"));
    CHECK(contains(report, "\"forgotten-receiver\" [waiting: chan receive"));
    CHECK(contains(report, "chan_test.cpp"));
    ch.close();  // released: no leak left for run_in_goro's own check
    done.wait();
  });
}

// The watchdog turns a detector that never fires into a failed test instead
// of a hang: it closes the channels after 2 s so run() returns. (That is how
// this test failed until worker::park_until() let the detector run while the
// worker still counted as idle.)
TEST_CASE("fibers blocked forever on channels are reported by the deadlock detector", "[deadlock]") {
  unsigned workers = GORO_WORKERS();
  goro::testing::leak_baseline base;
  // Outside run(): the blocked fibers are unwound after run()'s function is
  // abandoned and must not outlive what they wait on.
  goro::chan<int> inbox{0}, outbox{0}, other{0};
  goro::run_options o = with_workers(workers);
  o.detect_deadlock = true;
  o.deadlock_grace = 50ms;
  std::optional<std::string> what;
  auto start = std::chrono::steady_clock::now();
  {
    watchdog dog(
        [&] {
          inbox.close();
          outbox.close();
          other.close();
        },
        2000ms);
    try {
      goro::run(o, [&] {
        goro::wait_group gone;
        gone.add(2);
        goro::spawn({.name = "deadlocked-sender"}, [&] {
          try {
            outbox.send(1);
          } catch (const goro::channel_closed&) {  // only when the watchdog fired
          }
          gone.done();
        });
        goro::spawn({.name = "deadlocked-selector"}, [&] {
          try {
            goro::select(goro::on_recv(other), goro::on_send(outbox, 2));
          } catch (const goro::channel_closed&) {
          }
          gone.done();
        });
        (void)inbox.recv();
        gone.wait();
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
  CHECK(contains(*what, "\"main\" [chan receive]"));
  CHECK(contains(*what, "\"deadlocked-sender\" [chan send]"));
  CHECK(contains(*what, "\"deadlocked-selector\" [select]"));
  CHECK(took >= 40ms);
  CHECK(goro::live_fibers() == 0);
  CHECK_NOTHROW(goro::testing::check_since(base, 0ms));  // a deadlock's leftovers are not leaks
}

// Regression test (fixed bug; it was hidden because it crashes the process): run() unwinds fibers still blocked when its
// function returns, but their waiters stay linked in the wait queues of the
// channels (and selects) they were blocked on. A channel that outlives run()
// then hands its next value to the dead fiber: try_send() pops the stale
// waiter, writes into the unwound fiber's freed stack and readies a fiber of
// a destroyed scheduler (SEGV under ASan, silent corruption otherwise).
TEST_CASE("a channel that outlives run() forgets the waiters of fibers run() unwound") {
  goro::chan<int> ch{0}, other{0}, third{0};
  const auto unwound_before = goro::runtime_metrics().unwound_at_shutdown;
  goro::run(with_workers(2), [&] {
    goro::spawn({.name = "left-on-recv"}, [&] { (void)ch.recv(); });
    goro::spawn({.name = "left-in-select"}, [&] { goro::select(goro::on_recv(other), goro::on_send(third, 7)); });
    REQUIRE(until_parked("left-on-recv", goro::wait_reason::chan_receive));
    REQUIRE(until_parked("left-in-select", goro::wait_reason::select));
  });
  goro::testing::acknowledge_unwound(goro::runtime_metrics().unwound_at_shutdown - unwound_before);
  // Nobody is left to receive or send.
  CHECK(ch.try_send(42) == goro::chan_op::would_block);
  CHECK(ch.try_recv().status == goro::chan_op::would_block);
  CHECK(other.try_send(1) == goro::chan_op::would_block);
  CHECK(third.try_recv().status == goro::chan_op::would_block);
}
