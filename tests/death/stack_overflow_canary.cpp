// SPDX-License-Identifier: MIT
// expect: goro: stack overflow in fiber [0-9]+ .canary. \(spawned at [^)]*stack_overflow_canary.cpp:[0-9]+.*its canary zone was overwritten
// With no guard-page budget a fiber stack has only its canary zone: recursion that reaches it is reported when the fiber switches out.
#include <goro/goro.hpp>

#include <alloca.h>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace {

// Recurses in ~300-byte frames until the stack is within 4 KiB of the
// usable bottom, then extends the last frame with alloca() exactly down into
// the canary zone (the lowest bytes of the usable stack) and writes there:
// a stack overflow by a few dozen bytes, which stays inside this stack's own
// mapping (below the usable bottom lies its unguarded gap page). On the way
// back up, a frame about 6 KiB above the bottom switches out: an unguarded
// stack's canary is checked when its fiber switches out while deep.
[[gnu::noinline]] int dig(char* bottom, int depth, bool& switched) {
  volatile char frame[256];
  frame[0] = static_cast<char>(depth);
  char* here = const_cast<char*>(&frame[0]);
  if (here > bottom + 4096) {
    int below = dig(bottom, depth + 1, switched);
    if (!switched && here > bottom + 6144) {
      switched = true;
      goro::yield();
    }
    return below + frame[0];  // used after the call: not a tail call
  }
  // Grow this frame (alloca blocks are contiguous below the stack pointer)
  // until a block reaches below bottom + 32.
  char* block = here;
  while (block >= bottom + 32) {
    std::size_t more = static_cast<std::size_t>(block - bottom) - 16;
    block = static_cast<char*>(alloca(more));
  }
  // Overwrite the part of the block that lies in the canary zone.
  char* from = block > bottom ? block : bottom;
  for (char* p = from; p < bottom + 64; ++p) *static_cast<volatile char*>(p) = static_cast<char>(0xA5);
  return frame[0];
}

}  // namespace

int main() {
  // Before any stack exists: the budget is read once, when the first slab is carved.
  ::setenv("GORO_GUARD_PAGE_BUDGET", "0", 1);
  goro::run_options options;
  options.workers = 2;
  goro::run(options, [] {
    goro::wait_group done;
    done.add(1);
    goro::spawn({.name = "canary"}, [&] {
      const goro::detail::stack& st = goro::detail::current_fiber()->context.stack();
      if (st.guarded) {
        std::puts("unexpected: the fiber stack has a guard page despite GORO_GUARD_PAGE_BUDGET=0");
        std::exit(0);  // a clean exit fails the death test
      }
      bool switched = false;
      dig(st.bottom(), 0, switched);
      goro::yield();
      done.done();
    });
    done.wait();
  });
  std::puts("the canary overflow was not reported");
  return 0;
}
