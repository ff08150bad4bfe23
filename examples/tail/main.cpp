// SPDX-License-Identifier: MIT
// goro-tail: follow log files by name (like tail -F) and print every complete
// line exactly once, across rotation, truncation, restarts (--state) and a
// slow consumer. The flagship example of goro: one fiber per file, inotify
// through the reactor, file reads and fsyncs through goro::blocking, a
// bounded worker pool with blocking backpressure, and a shutdown that leaves
// no fiber behind.
//
// Fibers: signal (signalfd), watcher (inotify) or none (--poll), tracker
// (names; between scans it waits in one long blocking call whose thread also
// polls every followed file, see tracker.hpp), one follower per file (idle:
// parked until poked, no timer), [feeder + stage pool + orderer], output,
// checkpoint (--state). See session.hpp for the pipeline and its invariants.
//
// Shutdown (SIGINT/SIGTERM): root is cancelled, so nothing new is read; lines
// already read keep flowing to stdout for up to 350 ms (drain), writes give
// up at 650 ms (hard); then the state is saved with the offsets of what was
// actually written, and main checks that no fiber is left.
#include "follower.hpp"
#include "options.hpp"
#include "output.hpp"
#include "session.hpp"
#include "state_file.hpp"
#include "tracker.hpp"

#include <goro/goro.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <signal.h>
#include <string>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tail {
namespace {

constexpr auto drain_grace = 350ms;  // after root: followers may still hand over read lines
constexpr auto hard_grace = 300ms;  // after drain: output may still write
constexpr auto checkpoint_interval = 1s;

// must_exist_check() is --must-exist: every literal PATH must be a readable
// regular file and every glob must match something, before anything starts.
bool must_exist_check(const options& opts) {
  bool ok = true;
  for (const auto& spec : opts.paths) {
    if (has_glob_chars(spec)) {
      if (expand_spec(spec).empty()) {
        warn(spec + ": no file matches (--must-exist)");
        ok = false;
      }
      continue;
    }
    struct stat info {};
    if (::stat(spec.c_str(), &info) != 0) {
      warn(spec + ": " + std::strerror(errno) + " (--must-exist)");
      ok = false;
    } else if (!S_ISREG(info.st_mode)) {
      warn(spec + ": not a regular file");
      ok = false;
    }
  }
  return ok;
}

// save_checkpoint() writes the state file if it changed since the last save.
// Blocking work goes to the blocking pool.
void save_checkpoint(session& s, std::string& last_saved) {
  std::string text = render_state(s.table.snapshot());
  if (text == last_saved) return;
  auto error = goro::blocking([&] { return save_state(s.opts.state_path, text); });
  if (error) {
    warn(*error);
    return;
  }
  last_saved = std::move(text);
}

// wait_for_signal() is the signal fiber: SIGINT/SIGTERM arrive on a
// signalfd (blocked in every thread), so a handler never runs on a worker.
void wait_for_signal(session& s, int signal_fd) {
  while (!s.root.err()) {
    signalfd_siginfo info{};
    ssize_t n = ::read(signal_fd, &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) {
      s.cancel_root();
      return;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      warn(std::string("signalfd read failed: ") + std::strerror(errno));
      return;
    }
    if (goro::io::wait_readable(signal_fd, s.root)) return;
  }
}

struct run_outcome {
  int exit_status = 0;
  std::size_t fibers_left = 0;  // besides main, once everything was joined
};

// follow() is goro::run's main fiber: start every fiber, wait for the signal,
// shut down in order, save the state.
run_outcome follow(session& s, int signal_fd) {
  std::atomic<int> exit_status{0};
  std::tie(s.root, s.cancel_root) = goro::with_cancel(goro::background());
  std::tie(s.drain, s.cancel_drain) = goro::with_cancel(goro::background());
  std::tie(s.hard, s.cancel_hard) = goro::with_cancel(goro::background());
  s.lines = goro::chan<line_batch>(64);

  if (!s.opts.poll) {
    s.inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s.inotify_fd < 0) warn(std::string("inotify unavailable (") + std::strerror(errno) + "); polling every second");
  }

  goro::wait_group services;  // signal, watcher, tracker, checkpoint
  goro::wait_group sinks;     // output (+ feeder, orderer)
  auto start_service = [&](goro::wait_group& group, std::string name, auto body) {
    group.add(1);
    goro::spawn({.name = std::move(name)}, [&group, body]() mutable {
      body();
      group.done();
    });
  };

  start_service(services, "signal", [&] { wait_for_signal(s, signal_fd); });

  std::unique_ptr<stage> processing;
  goro::chan<line_batch> to_output = s.lines;
  if (s.opts.workers > 0) {
    processing = std::make_unique<stage>(s);
    to_output = processing->ready();
    start_service(sinks, "stage-feeder", [&] { processing->feed(); });
    start_service(sinks, "stage-orderer", [&] { processing->order(); });
  }
  start_service(sinks, "output", [&, to_output] { run_output(s, to_output, exit_status); });

  tracker names(s);
  start_service(services, "tracker", [&] { names.run(); });
  if (s.inotify_fd >= 0) start_service(services, "watcher", [&] { watch_inotify(s); });

  std::string last_saved;
  if (!s.opts.state_path.empty()) {
    start_service(services, "checkpoint", [&] {
      while (!goro::this_fiber::sleep_for(s.root, checkpoint_interval)) save_checkpoint(s, last_saved);
    });
  }

  // Run until a signal (or a fatal output error) cancels root.
  (void)s.root.done().recv();

  // Deadlines of the shutdown, on their own fiber; `finished` ends it early.
  auto [finished, cancel_finished] = goro::with_cancel(goro::background());
  goro::wait_group deadline_done;
  deadline_done.add(1);
  goro::spawn({.name = "shutdown-deadlines"}, [&, finished = finished] {
    if (!goro::this_fiber::sleep_for(finished, drain_grace)) s.cancel_drain();
    if (!goro::this_fiber::sleep_for(finished, hard_grace)) s.cancel_hard();
    deadline_done.done();
  });

  services.wait();   // no new followers from here on (the tracker has ended)
  s.followers.wait();
  s.lines.close();
  sinks.wait();      // every batch written (or given up on) and committed
  if (!s.opts.state_path.empty()) save_checkpoint(s, last_saved);
  if (s.inotify_fd >= 0) goro::io::close(s.inotify_fd);
  cancel_finished();
  deadline_done.wait();
  s.cancel_drain();
  s.cancel_hard();
  processing.reset();

  // A fiber that called done() may still be on its way out: give it a moment.
  for (int i = 0; i < 100 && goro::live_fibers() > 1; ++i) goro::this_fiber::sleep_for(1ms);
  run_outcome outcome;
  outcome.exit_status = exit_status.load(std::memory_order_relaxed);  // relaxed: output has been joined
  outcome.fibers_left = goro::live_fibers() - 1;
  if (outcome.fibers_left != 0) {
    warn("fibers left at exit:");
    goro::dump_fibers(std::cerr);
  }
  return outcome;
}

void print_stats(const session& s, std::chrono::duration<double> elapsed, std::size_t fibers_left) {
  auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  double seconds = elapsed.count() > 0 ? elapsed.count() : 1e-9;
  std::fprintf(stderr,
               "goro-tail: stats: lines=%llu bytes=%llu files=%llu rotations=%llu truncations=%llu "
               "split_lines=%llu unterminated=%llu overflows=%llu lost_batches=%llu lines/s=%.1f "
               "elapsed_s=%.3f live_fibers=%zu\n",
               static_cast<unsigned long long>(get(s.stats.lines)), static_cast<unsigned long long>(get(s.stats.bytes)),
               static_cast<unsigned long long>(get(s.stats.files)),
               static_cast<unsigned long long>(get(s.stats.rotations)),
               static_cast<unsigned long long>(get(s.stats.truncations)),
               static_cast<unsigned long long>(get(s.stats.split_lines)),
               static_cast<unsigned long long>(get(s.stats.unterminated)),
               static_cast<unsigned long long>(get(s.stats.overflows)),
               static_cast<unsigned long long>(get(s.stats.lost_batches)),
               static_cast<double>(get(s.stats.lines)) / seconds, seconds, fibers_left);
}

}  // namespace
}  // namespace tail

int main(int argc, char** argv) {
  using namespace tail;
  parse_result parsed = parse_options(argc, argv);
  if (parsed.help_requested) {
    std::fputs(usage(argv[0]).c_str(), stdout);
    return 0;
  }
  if (!parsed.error.empty()) {
    warn(parsed.error);
    std::fputs(usage(argv[0]).c_str(), stderr);
    return 2;
  }
  if (parsed.opts.must_exist && !must_exist_check(parsed.opts)) return 1;

  session s(parsed.opts);
  if (!s.opts.state_path.empty()) {
    if (auto error = load_state(s.opts.state_path, s.table.loaded)) {
      warn(*error);
      return 1;
    }
  }

  // Block the stop signals in this thread before goro::run starts its
  // workers (they inherit the mask), so they are only seen on the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    warn("cannot block SIGINT/SIGTERM");
    return 1;
  }
  int signal_fd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    warn(std::string("signalfd: ") + std::strerror(errno));
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout is an EPIPE we report, not a silent death
  goro::dump_on_signal(SIGQUIT);   // kill -QUIT prints every fiber and where it waits, like Go

  auto started = std::chrono::steady_clock::now();
  run_outcome outcome;
  try {
    goro::run_options run_opts;
    run_opts.detect_deadlock = false;  // everything waits on signals, files and timers by design
    outcome = goro::run(run_opts, [&] { return follow(s, signal_fd); });
  } catch (const std::exception& e) {
    warn(std::string("fatal: ") + e.what());
    return 1;
  }
  auto elapsed = std::chrono::steady_clock::now() - started;
  ::close(signal_fd);

  // After run() returned every fiber must be gone: any left was unwound.
  std::size_t leaked = goro::live_fibers() + static_cast<std::size_t>(goro::runtime_metrics().unwound_at_shutdown);
  std::size_t fibers_left = outcome.fibers_left + leaked;
  if (s.opts.stats) print_stats(s, elapsed, fibers_left);
  if (fibers_left != 0) {
    warn("internal error: " + std::to_string(fibers_left) + " fiber(s) left at exit");
    return 3;
  }
  return outcome.exit_status;
}
