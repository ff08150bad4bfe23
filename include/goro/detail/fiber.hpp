// SPDX-License-Identifier: MIT
// The fiber object: one goroutine. A small heap object (with the spawned
// callable inline when it fits); its stack is taken only when a worker first
// runs it and goes back to that worker's pool when it exits. So a fiber that
// is spawned and runs to completion without blocking reuses a hot stack, and
// a million queued fibers cost no stack pages (marl and Go's runnext get the
// same effect differently). A parked shallow fiber costs one touched stack
// page plus this object.
//
// Invariants:
//   * Ownership: a runnable fiber is owned by the queue that holds it; a
//     running one by the worker running it; a waiting one by the primitive it
//     waits on (through its waiter). Exactly one owner at a time; ready() is
//     the only way from waiting to runnable.
//   * Identity fields (id, name, spawn_site, stack) are written before the
//     fiber is registered and never change: racy readers (dump_fibers) read
//     them under the registry shard lock that published them.
//   * state/reason/blocked_since are atomics so diagnostics may read them while
//     the fiber runs elsewhere; they are descriptive, never used to synchronise.
//   * Every state change goes through transition(), which checks `from` when
//     GORO_DEBUG_CHECKS is on.
#pragma once

#include "goro/detail/assert.hpp"
#include "goro/detail/switch.hpp"
#include "goro/wait_reason.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include "goro/source_location.hpp"
#include <string>

namespace goro::detail {

class scheduler;
struct registry_shard;

// Monotonic coarse clock (a few ns, ~4 ms resolution): good enough for "how
// long has it waited" without paying for a precise clock read per park.
inline std::int64_t coarse_now_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct fiber {
  execution_context context;  // the one switch point's per-fiber data
  scheduler* sched = nullptr;

  // --- the task (destroyed when it returns or the fiber is unwound) ---
  void (*invoke)(void* callable) = nullptr;
  void (*dispose)(void* callable) noexcept = nullptr;
  void* callable = nullptr;  // into inline_callable when it fits, else heap
  static constexpr std::size_t inline_callable_size = 48;
  alignas(16) unsigned char inline_callable[inline_callable_size];

  // --- identity: immutable once registered ---
  std::uint64_t id = 0;
  std::string name;
  goro::source_location spawn_site;
  std::size_t stack_size = 0;  // the stack size class it runs on
  std::atomic<bool> stack_guarded{false};  // for diagnostics: set when the stack is taken
  bool is_main = false;

  // --- descriptive state for diagnostics ---
  std::atomic<fiber_state> state{fiber_state::runnable};
  std::atomic<wait_reason> reason{wait_reason::none};
  std::atomic<std::int64_t> blocked_since_ns{0};

  // --- park hand-off: run by the worker after this fiber switched out ---
  void (*after_switch)(void* arg) noexcept = nullptr;
  void* after_switch_arg = nullptr;

  // --- unguarded stacks: set once the fiber switched out near its bottom ---
  bool went_deep = false;  // owner: whoever runs the fiber

  // --- registry links: guarded by reg_shard->mu ---
  fiber* reg_prev = nullptr;
  fiber* reg_next = nullptr;
  registry_shard* reg_shard = nullptr;
};

inline void transition(fiber* f, fiber_state from, fiber_state to) noexcept {
#if GORO_DEBUG_CHECKS
  fiber_state seen = f->state.exchange(to, std::memory_order_relaxed);  // relaxed: descriptive
  if (seen != from) GORO_FATAL("bad fiber state transition");
#else
  (void)from;
  f->state.store(to, std::memory_order_relaxed);  // relaxed: descriptive
#endif
}

}  // namespace goro::detail
