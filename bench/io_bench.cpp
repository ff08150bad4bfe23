// SPDX-License-Identifier: MIT
// io: the reactor's wake-up path and the blocking() offload. Peer:
// bench/peers/go/io.go (the same socketpair through Go's netpoller); the
// blocking() offload has none.
//
// BM_io_pingpong: two fibers exchange one byte over a non-blocking
// socketpair, 20,000 round trips per iteration. Each side reads until EAGAIN,
// then parks in goro::io::wait_readable until the byte arrives: every round
// trip is two fd wake-ups through epoll, found by the worker's own idle poll
// or by the reactor's poller thread, whichever comes first. "per_round_trip".
//
// BM_blocking_call: goro::blocking([] { return 1; }) from one fiber, 20,000
// calls per iteration: the cost of handing a call to the elastic pool and
// parking until it returns (pool warm). "per_call".

#include "bench_support.hpp"

#include <cerrno>
#include <cstdint>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr std::int64_t kRoundTrips = 20'000;
constexpr std::int64_t kCalls = 20'000;

// Reads one byte from a non-blocking fd, parking the fiber while there is none.
bool read_byte(int fd) {
  char b;
  for (;;) {
    ssize_t r = ::read(fd, &b, 1);
    if (r == 1) return true;
    if (r < 0 && errno == EAGAIN) {
      if (goro::io::wait_readable(fd)) return false;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    return false;
  }
}
bool write_byte(int fd) {
  char b = 'x';
  for (;;) {
    ssize_t r = ::write(fd, &b, 1);
    if (r == 1) return true;
    if (r < 0 && errno == EAGAIN) {
      if (goro::io::wait_writable(fd)) return false;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    return false;
  }
}

void io_round_trips(std::int64_t n) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  goro::wait_group wg;
  wg.add(2);
  goro::spawn([&] {
    for (std::int64_t i = 0; i < n; ++i)
      if (!write_byte(fds[0]) || !read_byte(fds[0])) std::abort();
    wg.done();
  });
  goro::spawn([&] {
    for (std::int64_t i = 0; i < n; ++i)
      if (!read_byte(fds[1]) || !write_byte(fds[1])) std::abort();
    wg.done();
  });
  wg.wait();
  goro::io::close(fds[0]);
  goro::io::close(fds[1]);
}

void BM_io_pingpong(benchmark::State& state) {
  goro_bench::run_in_goro(state, state.range(0), [&] {
    io_round_trips(kRoundTrips / 10);  // untimed warm-up: starts the poller
    for (auto _ : state) io_round_trips(kRoundTrips);
  });
  const double trips = static_cast<double>(state.iterations()) * static_cast<double>(kRoundTrips);
  state.SetItemsProcessed(static_cast<std::int64_t>(trips));
  state.counters["per_round_trip"] = goro_bench::seconds_per(trips);
}

void BM_blocking_call(benchmark::State& state) {
  goro_bench::run_in_goro(state, state.range(0), [&] {
    for (int i = 0; i < 100; ++i) benchmark::DoNotOptimize(goro::blocking([] { return 1; }));  // warm pool
    for (auto _ : state)
      for (std::int64_t i = 0; i < kCalls; ++i) benchmark::DoNotOptimize(goro::blocking([] { return 1; }));
  });
  const double calls = static_cast<double>(state.iterations()) * static_cast<double>(kCalls);
  state.SetItemsProcessed(static_cast<std::int64_t>(calls));
  state.counters["per_call"] = goro_bench::seconds_per(calls);
}

}  // namespace

BENCHMARK(BM_io_pingpong)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_blocking_call)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
