// SPDX-License-Identifier: MIT
//
// The smallest program that uses goro through its CMake package
// (tests/package/run_consumer.cmake checks that it prints "goro <version>").
// It runs a tiny runtime so a missing dependency (Boost.Context, threads,
// moodycamel) fails to build or link here before it fails for users.

#include <goro/goro.hpp>

#include <atomic>
#include <cstdio>

int main() {
  int sum = goro::run([] {
    goro::wait_group wg;
    std::atomic<int> total{0};
    for (int i = 1; i <= 10; ++i) {
      wg.add(1);
      goro::spawn([&, i] {
        total += i;
        wg.done();
      });
    }
    wg.wait();
    return total.load();
  });
  if (sum != 55 || goro::live_fibers() != 0) return 1;
  std::printf("goro %s\n", GORO_VERSION_STRING);
  return 0;
}
