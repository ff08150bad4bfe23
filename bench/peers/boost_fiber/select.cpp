// SPDX-License-Identifier: MIT
// select: one consumer over 4 buffered channels, each fed by its own producer
// fiber with 1,000,000 ints; 4,000,000 messages. Boost.Fiber side of
// bench/select_bench.cpp, on work_stealing over 2 threads. Boost.Fiber has
// no select, so the consumer polls the 4 channels with try_pop, starting
// from the one after its last hit (fairness), and yields when all are
// empty: the usual emulation. buffered_channel needs a power of two and
// holds capacity - 1: 64 here (63 usable, Go and goro use 64). After a
// warm-up run of a tenth of the size. The sum is checked.
// Build: g++ -std=c++17 -O2 select.cpp -lboost_fiber -lboost_context -pthread
#include "peer_support.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace {

constexpr std::int64_t messages = 4'000'000;
constexpr std::size_t channels = 4;
using channel = boost::fibers::buffered_channel<std::int64_t>;

std::int64_t select_run(std::int64_t n, double& ns) {
  std::array<std::unique_ptr<channel>, channels> cs;
  for (auto& c : cs) c = std::make_unique<channel>(64);
  const std::int64_t per = n / static_cast<std::int64_t>(channels);
  auto start = std::chrono::steady_clock::now();
  std::vector<boost::fibers::fiber> producers;
  for (auto& c : cs) {
    producers.emplace_back([ch = c.get(), per] {
      for (std::int64_t i = 0; i < per; ++i) ch->push(i);
    });
  }
  std::int64_t sum = 0, v = 0;
  std::size_t next = 0;
  for (std::int64_t m = 0; m < per * static_cast<std::int64_t>(channels);) {
    bool got = false;
    for (std::size_t k = 0; k < channels && !got; ++k) {
      std::size_t idx = (next + k) % channels;
      if (cs[idx]->try_pop(v) == boost::fibers::channel_op_status::success) {
        sum += v;
        ++m;
        got = true;
        next = idx + 1;
      }
    }
    if (!got) boost::this_fiber::yield();
  }
  for (auto& f : producers) f.join();
  ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  return sum;
}

}  // namespace

int main() {
  int rc = 0;
  peer::run_work_stealing(2, false, [&] {
    double ns = 0;
    select_run(messages / 10, ns);
    peer::reset_peak_rss();
    const std::int64_t per = messages / static_cast<std::int64_t>(channels);
    if (select_run(messages, ns) != static_cast<std::int64_t>(channels) * per * (per - 1) / 2) {
      std::fprintf(stderr, "select: wrong sum\n");
      rc = 1;
      return;
    }
    std::printf("select %.2f ns/msg\n", ns / messages);
    peer::print_peak_rss("select");
  });
  return rc;
}
