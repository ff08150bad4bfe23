// SPDX-License-Identifier: MIT
// Runtime diagnostics: which fibers are alive and where they are stuck.
//
//   goro::live_fibers()        number of live fibers in the process
//   goro::list_fibers()        a fiber_info per live fiber
//   goro::dump_fibers(out)     Go's goroutine dump: one block per fiber
//   goro::runtime_metrics()    counters of the running runtimes
//   goro::metrics_text()       the same in Prometheus' text format
//   goro::dump_on_signal(sig)  SIGQUIT prints every fiber, like Go
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/fiber_info.hpp"

#include <array>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <fcntl.h>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
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
  std::uint64_t io_ready_polled = 0;  // fibers an idle worker found ready on the reactor itself (no poller-thread hop)
  std::uint64_t io_blocking_polls = 0;  // times the last idle worker slept in the reactor (epoll) instead of its futex
  std::uint64_t file_reads_cached = 0;     // io::read_at calls served from the page cache on the worker
  std::uint64_t file_reads_offloaded = 0;  // io::read_at calls that waited for the device on the blocking() pool
  std::int64_t global_queue_length = 0;
  std::size_t pending_timers = 0;
  std::size_t registry_slots = 0;   // slots in the live-fiber registry's tables (grown on demand, kept)
  long stack_slots = 0;             // fiber stacks carved so far (in use or free)
  long guarded_stacks = 0;          // of which have a guard page
  long released_stacks = 0;         // free stacks whose pages went back to the OS
  std::uint64_t unwound_at_shutdown = 0;  // fibers run() had to unwind (leaks)
  std::uint64_t starvation_reports = 0;   // slices reported by the starvation watchdog
  std::uint64_t lock_wait_reports = 0;    // long mutex waits reported by lock diagnostics
  // Fibers blocked right now, by wait reason (index: goro::wait_reason).
  std::array<std::size_t, static_cast<std::size_t>(wait_reason::count_)> blocked{};
  std::size_t blocked_on(wait_reason r) const noexcept { return blocked[static_cast<std::size_t>(r)]; }
};

// runtime_metrics() sums the counters of every running runtime. Any thread.
inline metrics runtime_metrics() {
  metrics m;
  std::lock_guard lock(detail::process().mu);
  for (detail::scheduler* s : detail::process().schedulers) {
    m.workers += s->worker_count();
    m.live_fibers += s->live_fibers();
    m.registry_slots += s->registry_slots();
    m.global_queue_length += s->global().size();
    m.pending_timers += s->pending_timers();
    m.fibers_spawned += s->foreign_spawned();
    m.starvation_reports += s->starvation_reports();
    m.lock_wait_reports += s->lock_wait_reports();
    s->for_each_fiber([&](detail::fiber* f) {
      if (f->state.load(std::memory_order_relaxed) == fiber_state::waiting)
        ++m.blocked[static_cast<std::size_t>(f->reason.load(std::memory_order_relaxed))];
    });
    for (std::size_t i = 0; i < s->worker_count(); ++i) {
      auto& c = s->worker_at(i).counters();
      m.fibers_spawned += c.spawned.load(std::memory_order_relaxed);
      m.context_switches += c.switches.load(std::memory_order_relaxed);
      m.steals += c.steals.load(std::memory_order_relaxed);
      m.worker_parks += c.parks.load(std::memory_order_relaxed);
      m.worker_wakes += c.wakes.load(std::memory_order_relaxed);
      m.io_ready_polled += c.io_polled.load(std::memory_order_relaxed);
      m.io_blocking_polls += c.io_blocking_polls.load(std::memory_order_relaxed);
      m.file_reads_cached += c.file_reads_cached.load(std::memory_order_relaxed);
      m.file_reads_offloaded += c.file_reads_offloaded.load(std::memory_order_relaxed);
    }
  }
  m.stack_slots = detail::stack_statistics().slots.load(std::memory_order_relaxed);
  m.guarded_stacks = detail::stack_statistics().guarded.load(std::memory_order_relaxed);
  m.released_stacks = detail::stack_statistics().released.load(std::memory_order_relaxed);
  m.unwound_at_shutdown = detail::process().unwound_at_shutdown.load(std::memory_order_relaxed);
  return m;
}

// metrics_text() renders runtime_metrics() in Prometheus' text exposition
// format (goro_* metrics), for a /metrics endpoint or a log line.
inline std::string metrics_text() {
  metrics m = runtime_metrics();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += "# HELP goro_";
    out += name;
    out += " ";
    out += help;
    out += "\n# TYPE goro_";
    out += name;
    out += " ";
    out += type;
    out += "\ngoro_";
    out += name;
    out += " ";
    out += std::to_string(value);
    out += "\n";
  };
  metric("workers", "gauge", "Worker threads of the running runtimes.", m.workers);
  metric("live_fibers", "gauge", "Fibers spawned and not finished.", m.live_fibers);
  metric("fibers_spawned_total", "counter", "Fibers spawned.", m.fibers_spawned);
  metric("context_switches_total", "counter", "Fiber slices run by workers.", m.context_switches);
  metric("steals_total", "counter", "Successful work steals.", m.steals);
  metric("worker_parks_total", "counter", "Times a worker went to sleep.", m.worker_parks);
  metric("worker_wakes_total", "counter", "Times a sleeping worker was woken for work.", m.worker_wakes);
  metric("io_ready_polled_total", "counter", "Fibers an idle worker found ready on the I/O reactor itself.",
         m.io_ready_polled);
  metric("io_blocking_polls_total", "counter", "Times the last idle worker slept in the I/O reactor (epoll).",
         m.io_blocking_polls);
  metric("file_reads_cached_total", "counter", "io::read_at calls served from the page cache on a worker.",
         m.file_reads_cached);
  metric("file_reads_offloaded_total", "counter", "io::read_at calls that went to the blocking() pool.",
         m.file_reads_offloaded);
  metric("global_queue_length", "gauge", "Fibers waiting in the global run queue.", m.global_queue_length);
  metric("pending_timers", "gauge", "Armed timers (sleeps, timeouts, tickers, deadlines).", m.pending_timers);
  metric("registry_slots", "gauge", "Slots in the live-fiber registry's tables (grown on demand, kept).",
         m.registry_slots);
  metric("stack_slots", "gauge", "Fiber stacks carved (in use or free).", m.stack_slots);
  metric("guarded_stacks", "gauge", "Fiber stacks with a guard page.", m.guarded_stacks);
  metric("released_stacks", "gauge", "Free stacks whose memory went back to the OS.", m.released_stacks);
  metric("unwound_at_shutdown_total", "counter", "Fibers still alive when run() returned (leaks).", m.unwound_at_shutdown);
  metric("starvation_reports_total", "counter", "Fiber slices reported by the starvation watchdog.", m.starvation_reports);
  metric("lock_wait_reports_total", "counter", "Long mutex waits reported.", m.lock_wait_reports);
  out += "# HELP goro_blocked_fibers Fibers blocked right now, by wait reason.\n# TYPE goro_blocked_fibers gauge\n";
  for (std::size_t i = 1; i < m.blocked.size(); ++i) {
    out += "goro_blocked_fibers{reason=\"";
    out += to_string(static_cast<wait_reason>(i));
    out += "\"} ";
    out += std::to_string(m.blocked[i]);
    out += "\n";
  }
  return out;
}

namespace detail {
// Self-pipe for dump_on_signal: the handler only writes a byte; a plain
// thread (not a worker) does the dump.
struct dump_signal_state {
  int pipe_read = -1;
  int pipe_write = -1;
  std::once_flag started;
};
inline dump_signal_state& dump_signal() {
  static dump_signal_state state;
  return state;
}
extern "C" inline void goro_dump_signal_handler(int) {
  int saved = errno;
  char byte = 1;
  (void)!::write(dump_signal().pipe_write, &byte, 1);
  errno = saved;
}
}  // namespace detail

// dump_on_signal() makes `sig` (SIGQUIT by default, like Go) print every live
// fiber to stderr without stopping the program. The dump runs on a helper
// thread started on the first call; the handler itself only writes to a
// pipe (async-signal-safe). Returns false if the pipe or handler could not
// be set up.
inline bool dump_on_signal(int sig = SIGQUIT) {
  auto& st = detail::dump_signal();
  bool ok = true;
  std::call_once(st.started, [&] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      ok = false;
      return;
    }
    st.pipe_read = fds[0];
    st.pipe_write = fds[1];
    std::thread([fd = fds[0]] {
      char byte;
      while (::read(fd, &byte, 1) == 1) {
        std::ostringstream dump;
        dump << "goro: fiber dump (signal)\n\n";
        dump_fibers(dump);
        std::fputs(dump.str().c_str(), stderr);
        std::fflush(stderr);
      }
    }).detach();
  });
  if (!ok || st.pipe_write < 0) return false;
  struct sigaction action {};
  action.sa_handler = &detail::goro_dump_signal_handler;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  return ::sigaction(sig, &action, nullptr) == 0;
}

}  // namespace goro
