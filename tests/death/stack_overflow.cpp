// SPDX-License-Identifier: MIT
// expect: goro: stack overflow in fiber [0-9]+ .recursor. \(spawned at [^)]*stack_overflow.cpp:[0-9]+.*in its guard page
// Unbounded recursion in a fiber runs into its stack's guard page; the SIGSEGV handler names the fiber, then aborts.
#include <goro/goro.hpp>

#include <cstdio>

namespace {

volatile int stop_at = -1;  // never reached; keeps the recursion from being provably infinite

[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[256];
  frame[0] = static_cast<char>(depth);
  frame[255] = static_cast<char>(depth);
  if (depth == stop_at) return 0;
  int below = recurse(depth + 1);
  return below + frame[0] + frame[255];  // used after the call: not a tail call
}

}  // namespace

int main() {
  goro::run_options options;
  options.workers = 2;
  int result = goro::run(options, [] {
    goro::wait_group done;
    int depth = 0;
    done.add(1);
    goro::spawn({.name = "recursor"}, [&] {
      depth = recurse(0);
      done.done();
    });
    done.wait();
    return depth;
  });
  std::printf("recursion returned %d: the overflow was not caught\n", result);
  return 0;
}
