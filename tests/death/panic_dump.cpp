// SPDX-License-Identifier: MIT
// expect: goro: panic: exception escaped fiber [0-9]+ .doomed. .*: kaboom.*fiber [0-9]+ .parked-witness. \[waiting: sync.WaitGroup.Wait
// An exception escaping a named fiber is a panic: the default handler names the fiber and what(), dumps every live fiber, and aborts.
#include <goro/goro.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

int main() {
  goro::wait_group never;
  never.add(1);
  goro::run_options options;
  options.workers = 2;
  options.detect_deadlock = false;
  goro::run(options, [&] {
    goro::spawn({.name = "parked-witness"}, [&] { never.wait(); });
    // The dump must show the witness parked: wait until it is.
    for (bool parked = false; !parked;) {
      goro::sleep_for(1ms);
      for (auto& f : goro::list_fibers())
        if (f.name == "parked-witness" && f.state == goro::fiber_state::waiting) parked = true;
    }
    goro::spawn({.name = "doomed"}, [] { throw std::runtime_error("kaboom"); });
    goro::sleep_for(10s);  // the panic aborts the process long before this
  });
  std::puts("the panic did not end the process");
  return 0;
}
