// SPDX-License-Identifier: MIT
// What one run of goro-tail shares between its fibers: the options, the
// shutdown contexts, the table of followed files, the line channel and the
// counters behind --stats.
//
// Pipeline:  tracker (names, globs) ──spawns──▶ follower per file ──line_batch──▶
//            [stage: worker_pool, --workers] ──▶ output (owns stdout, commits offsets)
//            watcher (inotify) pokes the tracker and the followers; checkpoint
//            saves the committed offsets (--state).
//
// Invariants:
//   * A file's content is read by at most one follower at a time, however many
//     names (literal paths, glob matches, rotated names) point to it: the
//     table is keyed by file_id, and a follower is started for a followed_file
//     only while running == false (both under file_table::mu).
//   * A batch's lines are contiguous in its file, batches of one file reach
//     output in read order, and followed_file::committed is the end of the
//     last batch written to stdout. So the state file never claims a line that
//     was not printed, nor forgets one that was.
//   * Every fiber ends once root is cancelled: blocking waits take root (or
//     drain/hard, which end shortly after it).
#pragma once

#include "options.hpp"
#include "state_file.hpp"

#include <goro/goro.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <variant>
#include <vector>

namespace tail {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Counters for --stats. Relaxed atomics: they are only summed at exit, after
// every fiber has been joined (the joins order them).
struct counters {
  std::atomic<std::uint64_t> lines{0};         // lines written to stdout
  std::atomic<std::uint64_t> bytes{0};         // bytes written to stdout
  std::atomic<std::uint64_t> files{0};         // distinct files opened
  std::atomic<std::uint64_t> rotations{0};     // a followed name moved to another file (or away)
  std::atomic<std::uint64_t> truncations{0};   // a file shrank or its head changed under us
  std::atomic<std::uint64_t> split_lines{0};   // lines longer than --max-line, printed in pieces
  std::atomic<std::uint64_t> unterminated{0};  // partial last lines flushed when their file was retired/truncated
  std::atomic<std::uint64_t> overflows{0};     // inotify queue overflows (each followed by a full rescan)
  std::atomic<std::uint64_t> lost_batches{0};  // batches cut by shutdown (not printed, not committed)
};

inline void add(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);  // relaxed: a statistic, read after joins
}

// warn() writes one "goro-tail: ..." line to stderr. stderr is unbuffered
// and each message is one fputs, so lines from different fibers do not mix.
inline void warn(const std::string& message) {
  std::string line = "goro-tail: " + message + "\n";
  std::fputs(line.c_str(), stderr);
}

// ---- Fault-injection hooks (tests only) ----------------------------------
// Like GORO_TAIL_SLOW_STAGE_US: read from the environment once, off unless
// set, and they only make goro-tail take error paths that real failures take.
//
// GORO_TAIL_FAULT_OVERFLOW_EVERY=N: the inotify watcher treats every Nth read
// of the inotify fd as a queue overflow: it discards the events it just read
// and handles a lone IN_Q_OVERFLOW event in their place (the very code a real
// overflow runs). A real overflow needs fs.inotify.max_queued_events lowered
// system-wide, which a test cannot do.
inline std::uint64_t fault_overflow_every() {
  static const std::uint64_t every = [] {
    const char* text = std::getenv("GORO_TAIL_FAULT_OVERFLOW_EVERY");
    if (text == nullptr || *text == '\0') return std::uint64_t{0};
    char* end = nullptr;
    unsigned long long n = std::strtoull(text, &end, 10);
    return end != nullptr && *end == '\0' ? static_cast<std::uint64_t>(n) : std::uint64_t{0};
  }();
  return every;
}

// GORO_TAIL_FAULT_EACCES=<substring>:<count>[:<skip>]: after the first <skip>
// (default 0) attempts to open (tracker) or read (follower) a path containing
// <substring>, the next <count> fail with EACCES, through the same error path
// as a real failure (tests run as root, where chmod 000 does not bite). With
// skip 1 the tracker's open succeeds and the follower's reads fail. The
// follower matches on the name it was first found under. fault_eacces(path)
// consumes one attempt and says whether this one must fail. Thread-safe (the
// tracker calls it on the blocking pool, followers once per read step).
struct eacces_fault {
  std::string substring;
  std::atomic<long long> skip{0};
  std::atomic<long long> left{0};
};

inline eacces_fault& eacces_fault_config() {
  static eacces_fault config;
  static const bool parsed = [] {
    const char* text = std::getenv("GORO_TAIL_FAULT_EACCES");
    if (text == nullptr) return false;
    std::string spec(text);
    long long numbers[2] = {0, 0};  // count, skip
    auto parse_tail = [&spec](long long& out) {
      auto colon = spec.rfind(':');
      if (colon == std::string::npos) return false;
      char* end = nullptr;
      out = std::strtoll(spec.c_str() + colon + 1, &end, 10);
      bool ok = end != nullptr && *end == '\0' && colon + 1 < spec.size() && out >= 0;
      if (ok) spec.resize(colon);
      return ok;
    };
    long long last = 0, before = 0;
    if (!parse_tail(last)) return false;
    std::string rest = spec;
    if (parse_tail(before) && !spec.empty()) {
      numbers[0] = before;  // <substring>:<count>:<skip>
      numbers[1] = last;
    } else {
      spec = rest;          // <substring>:<count>
      numbers[0] = last;
    }
    if (spec.empty() || numbers[0] <= 0) return false;
    config.substring = spec;
    config.skip.store(numbers[1], std::memory_order_relaxed);
    config.left.store(numbers[0], std::memory_order_relaxed);
    return true;
  }();
  (void)parsed;
  return config;
}

inline bool fault_eacces(const std::string& path) {
  eacces_fault& f = eacces_fault_config();
  if (f.substring.empty() || path.find(f.substring) == std::string::npos) return false;
  long long skip = f.skip.load(std::memory_order_relaxed);
  while (skip > 0)
    if (f.skip.compare_exchange_weak(skip, skip - 1, std::memory_order_relaxed)) return false;
  long long left = f.left.load(std::memory_order_relaxed);
  while (left > 0)
    if (f.left.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) return true;
  return false;
}

// What fstat says about a file's content, as far as following it goes: a
// follower only has work when this changed (grown, shrunk, or rewritten in
// place: the mtime moves even when the size comes out the same). This is
// what GNU tail compares when it polls, too.
struct file_stamp {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  friend bool operator==(const file_stamp&, const file_stamp&) = default;
};

inline file_stamp stamp_of(const struct stat& info) {
  return {static_cast<std::uint64_t>(info.st_size),
          static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec};
}

// One file being followed (or followed earlier in this run), by identity.
struct followed_file {
  followed_file(file_id file, std::string first_name, bool with_filename)
      : id(file), name(std::move(first_name)), prefix(with_filename ? name + ": " : std::string()) {}

  const file_id id;
  const std::string name;    // the path it was first found under
  const std::string prefix;  // "PATH: " with -H, else empty

  // A capacity-1 "look again" signal: events coalesce, none is lost (a poke
  // that arrives while the follower reads stays buffered for its next wait).
  goro::chan<std::monostate> poke{1};
  void wake() const { (void)poke.try_send(std::monostate{}); }

  // End of the last batch written to stdout. Written by output only.
  std::atomic<std::uint64_t> committed{0};

  // --- guarded by file_table::mu ---
  bool running = false;                    // a follower fiber owns the file now
  std::optional<steady::time_point> retire_at;  // no name points here: read until then, then stop
  std::uint64_t resume_offset = 0;         // where a new follower starts (valid while !running)
  std::string fingerprint;                 // the file's first bytes, as last read
  std::string last_path;                   // the name it was last seen under
  // The follower's descriptor while running (-1 otherwise), so that the
  // tracker's periodic check can fstat every followed file in one blocking
  // call instead of each follower waking up to look on its own.
  int fd = -1;
  // The file as the follower last saw it at end of file, i.e. while it had
  // nothing left to read; nullopt until then (it is still reading, so needs
  // no poke), and after a read error (it retries on its own timer). The
  // check pokes the follower only when a fresh fstat differs from this.
  std::optional<file_stamp> seen;
};

// A run of complete lines of one file, ready for stdout.
struct line_batch {
  std::shared_ptr<followed_file> file;
  std::string text;                 // whole lines, each ending in '\n', prefixed with -H
  std::uint64_t lines = 0;
  std::uint64_t start_offset = 0;   // file offset of the first line's first byte
  std::uint64_t end_offset = 0;     // file offset just past the last byte these lines cover
  std::vector<std::uint32_t> added_newlines;  // lines whose '\n' is not in the file (split, unterminated)
  bool reset = false;               // a truncation: commit end_offset (0) only once all of it is written

  // offset_after() is the file offset just past the last complete line
  // within the first `written` bytes of text (a write cut short), or
  // nullopt when not even one line was written (or for a reset batch).
  std::optional<std::uint64_t> offset_after(std::size_t written) const {
    if (reset) return std::nullopt;
    const std::size_t prefix = file->prefix.size();
    std::uint64_t offset = start_offset;
    std::size_t pos = 0, line = 0, next_added = 0;
    for (;;) {
      std::size_t newline = text.find('\n', pos + prefix);
      if (newline == std::string::npos || newline + 1 > written) break;
      std::size_t bytes = newline + 1 - pos - prefix;
      if (next_added < added_newlines.size() && added_newlines[next_added] == line) {
        --bytes;
        ++next_added;
      }
      offset += bytes;
      pos = newline + 1;
      ++line;
    }
    if (line == 0) return std::nullopt;
    return offset;
  }
};

// The table of followed files and the names that point to them.
class file_table {
 public:
  using name_key = std::pair<std::string, std::string>;  // (directory, base name)

  goro::mutex mu;
  std::map<file_id, std::shared_ptr<followed_file>> files;  // every file seen this run
  std::map<name_key, std::shared_ptr<followed_file>> names;  // what each followed name points to now
  std::map<int, std::vector<std::string>> watches;           // inotify wd -> directory spellings
  checkpoint_map loaded;  // --state entries of files not (yet) seen this run, kept for the next save
  // Paths that a followed name was renamed to (inotify IN_MOVED_FROM/TO):
  // a file created and rotated away before a scan opened it is still read.
  // Each entry: (new path, the followed name it had, which -H shows).
  std::vector<std::pair<std::string, std::string>> moved_away;

  // wake_all() pokes every running follower (after an inotify overflow).
  void wake_all() {
    std::lock_guard lock(mu);
    for (auto& [id, f] : files)
      if (f->running) f->wake();
  }
  // wake_retired() pokes the followers of rotated-away files: their new names
  // are not followed, so events under those names land here.
  void wake_retired() {
    std::lock_guard lock(mu);
    for (auto& [id, f] : files)
      if (f->running && f->retire_at) f->wake();
  }
  // wake_name() pokes the follower of dir/base; false when no followed name matches.
  bool wake_name(const std::string& dir, const std::string& base) {
    std::lock_guard lock(mu);
    auto it = names.find({dir, base});
    if (it == names.end()) return false;
    it->second->wake();
    return true;
  }

  // snapshot() is the checkpoint to save: committed offsets of the files of
  // this run, plus the loaded entries of files not seen.
  checkpoint_map snapshot() {
    std::lock_guard lock(mu);
    checkpoint_map out = loaded;
    for (auto& [id, f] : files) {
      checkpoint cp;
      cp.offset = f->committed.load(std::memory_order_acquire);  // acquire: pairs with output's release
      cp.fingerprint = f->fingerprint;
      cp.path = f->last_path.empty() ? f->name : f->last_path;
      out[id] = std::move(cp);
    }
    return out;
  }
};

// split_path() splits a path into (directory, base name) the way inotify
// reports events: the directory as watched, the name inside it.
inline file_table::name_key split_path(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  // "./a" and "a" must name the same thing.
  while (dir.size() > 2 && dir.compare(dir.size() - 2, 2, "/.") == 0) dir.resize(dir.size() - 2);
  return {dir, path.substr(slash + 1)};
}

// Everything one run shares. Built on the main fiber, outlives every fiber.
struct session {
  explicit session(options o) : opts(std::move(o)) {}

  const options opts;
  counters stats;
  file_table table;

  // root: cancelled by SIGINT/SIGTERM (or a fatal output error): stop reading.
  // drain: cancelled a little later: stop handing read lines to output.
  // hard: cancelled last: stop writing (stdout is stuck); exit regardless.
  goro::context root, drain, hard;
  goro::cancel_func cancel_root, cancel_drain, cancel_hard;

  goro::chan<line_batch> lines;                // followers -> stage/output
  goro::chan<std::monostate> rescan{1};        // "look at the names again" (tracker)
  goro::wait_group followers;                  // running follower fibers
  int inotify_fd = -1;                         // -1 in --poll mode
  std::atomic<bool> inotify_broken{false};     // the watcher gave up: check every second (relaxed: a hint)

  // The tracker's check: every check_interval() it resolves every name again
  // and fstats every followed file, all in one blocking call, and pokes only
  // the followers whose file changed (see tracker::run). Followers have no
  // timer of their own while idle, so 50 idle files cost one wake-up per
  // interval, not 50.
  //   --poll MS: the check is the polling, every MS.
  //   inotify: events do the work and the check is only a safety net (a
  //   change inotify did not report, e.g. on a network filesystem), so it is
  //   rare, unless the names have blind spots that inotify cannot watch (a
  //   directory that does not exist yet, a glob in the directory part, a
  //   symlinked name whose target lives elsewhere) or inotify is unavailable
  //   or broke: then every second.
  steady::duration check_interval(bool blind_spots) const {
    if (opts.poll) return steady::duration(*opts.poll);
    if (inotify_fd < 0 || blind_spots || inotify_broken.load(std::memory_order_relaxed)) return 1s;
    return 10s;
  }
  // A follower whose last read failed retries on its own at this interval.
  steady::duration retry_interval() const { return opts.poll ? steady::duration(*opts.poll) : steady::duration(1s); }
  // How often a rotated-away (retiring) file is looked at besides pokes:
  // under inotify it may have moved out of the watched directories, where no
  // event reaches us, so every 100 ms during its --rotate-wait; with --poll
  // the tracker's check covers it like any other followed file.
  std::optional<steady::duration> retired_interval() const {
    if (opts.poll) return std::nullopt;
    return steady::duration(100ms);
  }
  // In --workers mode a batch is one stage task: keep tasks small so a slow
  // stage is felt per few lines, as a real per-line transform would be.
  std::size_t batch_line_limit() const { return opts.workers > 0 ? 32 : SIZE_MAX; }
};

}  // namespace tail
