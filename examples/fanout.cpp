// SPDX-License-Identifier: MIT
// Fan-out/fan-in over many fibers: 100,000 fibers share work through a
// mutex-guarded queue, report through a wait_group, and the program ends
// with a leak check and the runtime's metrics. The README's first command.
#include <goro/goro.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>

int main() {
  using clock = std::chrono::steady_clock;
  const int producers = 1'000;
  const int items_per_producer = 100;
  const int consumers = 99'000;

  auto start = clock::now();
  long long checksum = goro::run([&] {
    goro::mutex mu;
    goro::condition_variable ready;
    std::deque<long long> queue;  // guarded by mu
    int producers_left = producers;
    long long total = 0;

    goro::wait_group done;
    // Fan-out: producers each push a batch, yielding between items so the
    // scheduler interleaves them.
    for (int p = 0; p < producers; ++p) {
      done.add(1);
      goro::spawn({.name = "producer"}, [&, p] {
        for (int i = 0; i < items_per_producer; ++i) {
          {
            std::lock_guard lock(mu);
            queue.push_back(static_cast<long long>(p) * items_per_producer + i);
          }
          ready.notify_one();
          if (i % 10 == 0) goro::yield();
        }
        std::lock_guard lock(mu);
        if (--producers_left == 0) ready.notify_all();
        done.done();
      });
    }
    // Fan-in: consumers take items until the producers are done and the
    // queue is empty.
    for (int c = 0; c < consumers; ++c) {
      done.add(1);
      goro::spawn({.name = "consumer"}, [&] {
        long long mine = 0;
        std::unique_lock lock(mu);
        for (;;) {
          ready.wait(lock, [&] { return !queue.empty() || producers_left == 0; });
          if (queue.empty()) break;
          mine += queue.front();
          queue.pop_front();
        }
        total += mine;
        done.done();
      });
    }
    done.wait();
    goro::testing::expect_no_leaked_fibers();  // every fiber above has ended
    auto m = goro::runtime_metrics();
    std::printf("fibers spawned:    %llu\n", static_cast<unsigned long long>(m.fibers_spawned));
    std::printf("context switches:  %llu\n", static_cast<unsigned long long>(m.context_switches));
    std::printf("steals:            %llu\n", static_cast<unsigned long long>(m.steals));
    std::printf("workers:           %zu\n", m.workers);
    return total;
  });
  auto elapsed = std::chrono::duration<double, std::milli>(clock::now() - start).count();

  const long long n = static_cast<long long>(producers) * items_per_producer;
  const long long expected = n * (n - 1) / 2;
  std::printf("items:             %lld (checksum %s)\n", n, checksum == expected ? "ok" : "WRONG");
  std::printf("elapsed:           %.1f ms\n", elapsed);
  std::printf("live fibers:       %zu\n", goro::live_fibers());
  return checksum == expected && goro::live_fibers() == 0 ? 0 : 1;
}
