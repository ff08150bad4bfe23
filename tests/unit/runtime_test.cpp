// SPDX-License-Identifier: MIT
// goro::run() and goro::spawn(): results, exceptions, nesting, spawning from
// fibers and from plain threads, many fibers.
#include "goro_test.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <latch>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "goro/detail/stack_pool.hpp"

using namespace std::chrono_literals;

TEST_CASE("run returns the main fiber's value") {
  unsigned workers = GORO_WORKERS();
  int v = goro_test::run_in_goro(workers, [] { return 42; });
  CHECK(v == 42);
  std::string s = goro_test::run_in_goro(workers, [] { return std::string(100, 'x'); });
  CHECK(s.size() == 100);
}

TEST_CASE("run returns move-only results") {
  auto p = goro::run([] { return std::make_unique<int>(7); });
  REQUIRE(p);
  CHECK(*p == 7);
}

TEST_CASE("run rethrows the main fiber's exception after shutdown") {
  unsigned workers = GORO_WORKERS();
  goro::run_options o;
  o.workers = workers;
  CHECK_THROWS_WITH(goro::run(o, []() -> int { throw std::runtime_error("boom"); }), "boom");
  CHECK(goro::live_fibers() == 0);
}

TEST_CASE("run from inside a fiber is a misuse naming the fiber") {
  goro::run([] {
    goro::wait_group wg;
    std::string message;
    wg.add(1);
    goro::spawn({.name = "nested-runner"}, [&] {
      try {
        goro::run([] {});
      } catch (const goro::misuse_error& e) {
        message = e.what();
      }
      wg.done();
    });
    wg.wait();
    CHECK(message.find("nested-runner") != std::string::npos);
  });
}

TEST_CASE("spawn outside any runtime throws") {
  CHECK_THROWS_AS(goro::spawn([] {}), goro::misuse_error);
}

TEST_CASE("main fiber is named and has an id") {
  goro::run_options o;
  o.main_name = "the-main";
  goro::run(o, [] {
    CHECK(goro::this_fiber::name() == "the-main");
    CHECK(goro::this_fiber::id() != 0);
    CHECK(goro::this_fiber::in_fiber());
  });
  CHECK_FALSE(goro::this_fiber::in_fiber());
  CHECK(goro::this_fiber::id() == 0);
}

TEST_CASE("nested spawns form a tree and all finish") {
  unsigned workers = GORO_WORKERS();
  const int depth = 6;  // 4^0 + ... + 4^6 = 5461 fibers
  long count = goro_test::run_in_goro(workers, [&] {
    std::atomic<long> n{0};
    goro::wait_group wg;
    std::function<void(int)> node = [&](int level) {
      n.fetch_add(1, std::memory_order_relaxed);
      if (level < depth) {
        for (int i = 0; i < 4; ++i) {
          wg.add(1);
          goro::spawn([&, level] {
            node(level + 1);
            wg.done();
          });
        }
      }
    };
    node(0);
    wg.wait();
    return n.load();
  });
  CHECK(count == 5461);
}

TEST_CASE("spawn from a plain thread joins the running runtime") {
  unsigned workers = GORO_WORKERS();
  goro_test::run_in_goro(workers, [] {
    goro::wait_group wg;
    std::atomic<int> ran{0};
    std::atomic<bool> all_in_fibers{true};
    wg.add(100);
    std::thread outsider([&] {
      for (int i = 0; i < 100; ++i)
        goro::spawn({.name = "from-thread"}, [&] {
          if (!goro::this_fiber::in_fiber()) all_in_fibers = false;
          ran.fetch_add(1);
          wg.done();
        });
    });
    wg.wait();
    outsider.join();
    CHECK(ran.load() == 100);
    CHECK(all_in_fibers.load());
  });
}

TEST_CASE("one million fibers spawned and joined") {
  // With one worker all of them are alive at once (the spawner never blocks
  // until wait()); that case is covered by the memory benchmark instead.
  unsigned workers = GENERATE(2u, 4u);
  const long n = goro_test::scaled(1'000'000, 1000);
  long sum = goro_test::run_in_goro(workers, [&] {
    goro::wait_group wg;
    std::atomic<long> total{0};
    wg.add(n);
    for (long i = 0; i < n; ++i)
      goro::spawn([&, i] {
        total.fetch_add(i, std::memory_order_relaxed);
        wg.done();
      });
    wg.wait();
    return total.load();
  });
  CHECK(sum == n * (n - 1) / 2);
  CHECK(goro::live_fibers() == 0);
}

TEST_CASE("callables of any size and move-only callables") {
  goro_test::run_in_goro(2, [] {
    goro::wait_group wg;
    // 16 KiB: more than an eighth of a 64 KiB stack, so the callable goes to
    // the heap (under sanitizers, with 256 KiB stacks, it stays on the stack).
    std::array<char, 16 * 1024> big{};
    big[100] = 'g';
    std::atomic<int> ok{0};
    wg.add(2);
    goro::spawn([&wg, &ok, big] {
      if (big[100] == 'g') ok++;
      wg.done();
    });
    auto owned = std::make_unique<int>(5);
    goro::spawn([&wg, &ok, owned = std::move(owned)] {
      if (*owned == 5) ok++;
      wg.done();
    });
    wg.wait();
    CHECK(ok.load() == 2);
  });
}

TEST_CASE("spawn_options stack_size gives a larger stack") {
  goro_test::run_in_goro(2, [] {
    goro::wait_group wg;
    std::atomic<bool> ok{false};
    wg.add(1);
    goro::spawn({.name = "big-stack", .stack_size = 1024 * 1024}, [&] {
      volatile char buffer[512 * 1024];
      buffer[0] = 1;
      buffer[sizeof buffer - 1] = 2;
      ok = buffer[0] + buffer[sizeof buffer - 1] == 3;
      wg.done();
    });
    wg.wait();
    CHECK(ok.load());
  });
}

TEST_CASE("spawn_options stack_size over 1 GiB throws bad_alloc at spawn and starts nothing") {
  goro_test::run_in_goro(2, [] {
    std::atomic<bool> ran{false};
    for (std::size_t size : {(std::size_t{1} << 30) + 1, std::size_t{1} << 32, std::size_t{1} << 40}) {
      CHECK_THROWS_AS(goro::spawn({.name = "huge", .stack_size = size}, [&] { ran = true; }), std::bad_alloc);
    }
    // A size that is not refused is recorded exactly (in 32 bits of the
    // fiber): a fiber asking for 1 MiB + 1 page says so.
    goro::chan<std::size_t> reported{1};
    goro::spawn({.name = "odd-size", .stack_size = (1u << 20) + 4096}, [&] {
      for (const goro::fiber_info& info : goro::list_fibers())
        if (info.name == "odd-size") reported.send(info.stack_size);
    });
    CHECK(reported.recv() == (1u << 20) + 4096);
    CHECK_FALSE(ran.load());
  });
}

TEST_CASE("a panic handler receives the escaped exception and the fiber") {
  goro::run_options o;
  o.workers = 2;
  std::string seen_name, seen_what;
  goro::wait_group* handled = nullptr;
  o.panic_handler = [&](const goro::fiber_info& info, std::exception_ptr e) {
    seen_name = info.name;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      seen_what = ex.what();
    }
    handled->done();
  };
  goro::run(o, [&] {
    goro::wait_group wg;
    handled = &wg;
    wg.add(1);
    goro::spawn({.name = "thrower"}, [] { throw std::logic_error("escaped"); });
    wg.wait();
  });
  CHECK(seen_name == "thrower");
  CHECK(seen_what == "escaped");
}

TEST_CASE("runs can follow each other and run side by side on different threads") {
  for (int i = 0; i < 5; ++i) CHECK(goro::run([i] { return i; }) == i);
  std::atomic<int> total{0};
  std::thread a([&] { total += goro::run([] { return 1; }); });
  std::thread b([&] { total += goro::run([] { return 2; }); });
  a.join();
  b.join();
  CHECK(total.load() == 3);
}

// The stack pool's high-water mark follows demand (detail/stack_pool.hpp):
// the free stacks of a burst stay resident while the burst is recent, and go
// back to the OS once demand has stayed low for a window or two, or at once
// when the pool trims on idle. Driven on a private size-class pool, so the
// only stack traffic is this test's.
TEST_CASE("free stacks of a recent burst stay resident; they go back once demand has stayed low") {
  using goro::detail::size_class_pool;
  using goro::detail::stack_statistics;
  size_class_pool pool(16 * 1024);
  const std::size_t burst = 2 * size_class_pool::high_water;
  std::vector<goro::detail::stack> taken(burst);
  pool.take(taken.data(), burst);
  auto released = [] { return stack_statistics().released.load(); };

  // The burst drains: past the fixed high-water mark, but within the peak.
  const long before_drain = released();
  for (auto& s : taken) pool.give(s);
  taken.clear();
  CHECK(released() == before_drain);

  // Demand stays at one stack: within two or three windows the peak no
  // longer counts, and the next give() returns the excess. The sleep is the
  // stimulus (the policy is time-windowed), the deadline a generous bound.
  const auto deadline = std::chrono::steady_clock::now() + 4 * std::chrono::milliseconds(GORO_STACK_TRIM_IDLE_MS) + 10s;
  while (released() - before_drain < static_cast<long>(burst - size_class_pool::high_water) &&
         std::chrono::steady_clock::now() < deadline) {
    goro::detail::stack one;
    pool.take(&one, 1);
    pool.give(one);
    std::this_thread::sleep_for(20ms);
  }
  CHECK(released() - before_drain >= static_cast<long>(burst - size_class_pool::high_water));

  // Idle long enough: everything beyond the floor goes back.
  pool.trim_if_idle(size_class_pool::monotonic_coarse_ns() + 2'000'000LL * GORO_STACK_TRIM_IDLE_MS);
  CHECK(released() - before_drain >= static_cast<long>(burst - GORO_STACK_TRIM_FLOOR));
}

// Slabs are carved outside the pool's lock (detail/stack_pool.hpp), so two
// threads short of stacks at once each carve their own: every stack handed
// out must still be a distinct, whole, guarded (where the kernel has guard
// regions) slot, and all of it writable.
TEST_CASE("threads taking stacks at once get disjoint, whole stacks") {
  using goro::detail::size_class_pool;
  using goro::detail::stack;
  size_class_pool pool(16 * 1024);
  constexpr std::size_t per_thread = 5 * size_class_pool::slab_stacks + 7;
  std::vector<stack> a(per_thread), b(per_thread);
  std::latch start(2);
  auto taker = [&](std::vector<stack>& out) {
    start.arrive_and_wait();
    for (std::size_t i = 0; i < out.size(); i += 8) pool.take(&out[i], std::min<std::size_t>(8, out.size() - i));
  };
  std::thread ta(taker, std::ref(a)), tb(taker, std::ref(b));
  ta.join();
  tb.join();
  std::vector<stack> all(a);
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end(), [](const stack& x, const stack& y) { return x.base < y.base; });
  for (std::size_t i = 0; i < all.size(); ++i) {
    const stack& s = all[i];
    REQUIRE(s);
    CHECK(s.usable_size() >= 16 * 1024);
    if (i > 0) CHECK(all[i - 1].top() <= s.base);  // no overlap
    if (goro::detail::guard_regions_supported()) CHECK(s.guarded);
    s.top()[-1] = 1;  // the whole usable range is mapped and writable
    s.bottom()[0] = 0;
  }
  pool.give(all.data(), all.size());
}

// A worker's cache hands stacks back in batches; what goes back is reused
// before any new slab is carved.
TEST_CASE("stacks given back in a batch are taken again before new ones are carved") {
  using goro::detail::size_class_pool;
  using goro::detail::stack;
  using goro::detail::stack_statistics;
  size_class_pool pool(16 * 1024);
  std::vector<stack> first(100);
  pool.take(first.data(), first.size());
  pool.give(first.data(), first.size());
  const long slots_before = stack_statistics().slots.load();
  std::vector<stack> again(100);
  pool.take(again.data(), again.size());
  CHECK(stack_statistics().slots.load() == slots_before);
  auto by_base = [](const stack& x, const stack& y) { return x.base < y.base; };
  std::sort(first.begin(), first.end(), by_base);
  std::sort(again.begin(), again.end(), by_base);
  CHECK(std::equal(first.begin(), first.end(), again.begin(), [](const stack& x, const stack& y) { return x.base == y.base; }));
  pool.give(again.data(), again.size());
}
