// SPDX-License-Identifier: MIT
// Runtime diagnostics: which fibers are alive and where they are stuck.
//
//   goro::live_fibers()        number of live fibers in the process
//   goro::list_fibers()        a fiber_info per live fiber
//   goro::dump_fibers(out)     Go's goroutine dump: one block per fiber
//   goro::runtime_metrics()    counters of the running runtimes
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/fiber_info.hpp"

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <vector>

namespace goro {

// live_fibers() counts fibers that were spawned and have not finished, in
// every runtime of the process, including the main fiber of each run() and
// the caller if it is a fiber. Any thread.
inline std::size_t live_fibers() {
  std::lock_guard lock(detail::process().mu);
  std::size_t n = 0;
  for (detail::scheduler* s : detail::process().schedulers) n += s->live_fibers();
  return n;
}

// list_fibers() snapshots every live fiber. Any thread.
inline std::vector<fiber_info> list_fibers() {
  std::vector<fiber_info> out;
  std::lock_guard lock(detail::process().mu);
  for (detail::scheduler* s : detail::process().schedulers)
    s->for_each_fiber([&](detail::fiber* f) { out.push_back(detail::snapshot(f)); });
  return out;
}

// dump_fibers() writes every live fiber (id, name, state, wait reason and how
// long it has waited, spawn site, stack) to out, like Go's SIGQUIT dump.
inline void dump_fibers(std::ostream& out) { detail::write_fiber_dump(out); }

struct metrics {
  std::size_t workers = 0;
  std::size_t live_fibers = 0;
  std::uint64_t fibers_spawned = 0;
  std::uint64_t context_switches = 0;
  std::uint64_t steals = 0;
  std::uint64_t worker_parks = 0;
  std::uint64_t worker_wakes = 0;
  std::int64_t global_queue_length = 0;
  std::size_t pending_timers = 0;
  long stack_slots = 0;             // fiber stacks carved so far (in use or free)
  long guarded_stacks = 0;          // of which have a guard page
  long released_stacks = 0;         // free stacks whose pages went back to the OS
  std::uint64_t unwound_at_shutdown = 0;  // fibers run() had to unwind (leaks)
};

// runtime_metrics() sums the counters of every running runtime. Any thread.
inline metrics runtime_metrics() {
  metrics m;
  std::lock_guard lock(detail::process().mu);
  for (detail::scheduler* s : detail::process().schedulers) {
    m.workers += s->worker_count();
    m.live_fibers += s->live_fibers();
    m.global_queue_length += s->global().size();
    m.pending_timers += s->pending_timers();
    m.fibers_spawned += s->foreign_spawned();
    for (std::size_t i = 0; i < s->worker_count(); ++i) {
      auto& c = s->worker_at(i).counters();
      m.fibers_spawned += c.spawned.load(std::memory_order_relaxed);
      m.context_switches += c.switches.load(std::memory_order_relaxed);
      m.steals += c.steals.load(std::memory_order_relaxed);
      m.worker_parks += c.parks.load(std::memory_order_relaxed);
      m.worker_wakes += c.wakes.load(std::memory_order_relaxed);
    }
  }
  m.stack_slots = detail::stack_statistics().slots.load(std::memory_order_relaxed);
  m.guarded_stacks = detail::stack_statistics().guarded.load(std::memory_order_relaxed);
  m.released_stacks = detail::stack_statistics().released.load(std::memory_order_relaxed);
  m.unwound_at_shutdown = detail::process().unwound_at_shutdown.load(std::memory_order_relaxed);
  return m;
}

}  // namespace goro
