// SPDX-License-Identifier: MIT
// pingpong: unbuffered channel ping-pong. Fiber A sends i on `ping` and waits
// for it back on `pong`; fiber B receives on `ping` and sends the value back
// on `pong`. 1,000,000 round trips per iteration (two rendezvous each: every
// send meets a parked receiver, so each round trip is two hand-overs between
// fibers). Reports items_per_second (items = round trips), "per_round_trip"
// and "peak_rss_mib".
//
// On 1 worker the two fibers strictly alternate: the cost of two
// send/recv rendezvous and two switches. On 2 workers the partner may sit on
// the other worker, so each hand-over can cross threads (wake-up of a parked
// worker included): the latency figure Go's GOMAXPROCS=2 is compared with.
// Peers: bench/peers/go/pingpong.go, bench/peers/boost_fiber/pingpong.cpp.

#include "bench_support.hpp"

#include <cstdint>

namespace {

constexpr std::int64_t kRoundTrips = 1'000'000;  // per benchmark iteration

void round_trips(std::int64_t n) {
  goro::chan<std::int64_t> ping{0}, pong{0};
  goro::wait_group wg;
  wg.add(2);
  goro::spawn([&] {
    for (std::int64_t i = 0; i < n; ++i) {
      ping.send(i);
      (void)pong.recv();
    }
    wg.done();
  });
  goro::spawn([&] {
    for (std::int64_t i = 0; i < n; ++i) pong.send(ping.recv().value_or(-1));
    wg.done();
  });
  wg.wait();
}

void BM_pingpong(benchmark::State& state) {
  goro_bench::peak_rss_scope peak(state);
  goro_bench::run_in_goro(state, state.range(0), [&] {
    round_trips(kRoundTrips / 10);  // untimed warm-up, as the peers do
    for (auto _ : state) round_trips(kRoundTrips);
  });
  const double trips = static_cast<double>(state.iterations()) * static_cast<double>(kRoundTrips);
  state.SetItemsProcessed(static_cast<std::int64_t>(trips));
  state.counters["per_round_trip"] = goro_bench::seconds_per(trips);
}

}  // namespace

BENCHMARK(BM_pingpong)->Apply(goro_bench::sweep_workers)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
