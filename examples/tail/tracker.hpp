// SPDX-License-Identifier: MIT
// tracker: follows names. It expands the PATH arguments (globs included),
// resolves each name to a file (device + inode), starts a follower for a file
// it has not seen, and retires a file no name points to any more (rotation,
// delete: the follower reads it on for --rotate-wait). watcher: turns inotify
// events into pokes, for the tracker (names changed) and for the followers
// (content changed).
//
// A scan runs in four steps so that no filesystem call blocks a worker:
//   1. blocking: glob + stat every name (and add inotify watches);
//   2. fiber, under the table lock: bind names to running files, list the
//      names to open, retire running files that lost every name;
//   3. blocking: open the new names, read their head (fingerprint) and size;
//   4. fiber, under the table lock: pick each file's start offset (state
//      checkpoint, an earlier follower of this run, --from-end, or 0) and
//      start its follower; count rotations.
// The identity read at open (fstat of the open descriptor) is what counts: a
// name that changed between steps 1 and 3 is resolved again at the next scan.
//
// Between scans the tracker waits in one long goro::blocking call
// (wait_for_change), whose thread does the checks: every
// session::check_interval() it fstats the descriptor of every running
// follower and pokes only those whose file no longer matches what they last
// saw at end of file (followed_file::seen), and it stats the names again,
// handing them to the fiber only when they changed. With --poll this is the
// polling; under inotify it is a rare safety net. So an idle tick wakes one
// thread, not every follower (nor a worker): idle costs about what GNU
// tail's polling does, and nothing between checks under inotify.
#pragma once

#include "follower.hpp"
#include "session.hpp"

#include <goro/goro.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace tail {

inline bool has_glob_chars(const std::string& text) { return text.find_first_of("*?[") != std::string::npos; }

inline constexpr std::uint32_t watch_mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY |
                                            IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

// expand_spec() lists the names a PATH argument stands for now. Blocking.
inline std::vector<std::string> expand_spec(const std::string& spec) {
  if (!has_glob_chars(spec)) return {spec};
  std::vector<std::string> names;
  glob_t matches{};
  if (::glob(spec.c_str(), 0, nullptr, &matches) == 0)
    for (std::size_t i = 0; i < matches.gl_pathc; ++i) names.emplace_back(matches.gl_pathv[i]);
  ::globfree(&matches);
  return names;
}

class tracker {
 public:
  explicit tracker(session& s) : s_(s) {}

  // run() is the tracker fiber: a first scan (where --from-end applies),
  // then, until root is cancelled, wait on the blocking pool for the names
  // to change (wait_for_change) and bind them again (scan).
  void run() {
    literal_only_ = std::none_of(s_.opts.paths.begin(), s_.opts.paths.end(), has_glob_chars);
    scan(true, goro::blocking([&] { return list_names(take_moved()); }));
    next_check_ = steady::now() + s_.check_interval(blind_spots_ || !open_errors_.empty());
    while (!s_.root.err()) {
      std::optional<listing> changed = goro::blocking([&] { return wait_for_change(); });
      if (!changed) break;  // root was cancelled
      scan(false, std::move(*changed));
      // A name that failed to open in this scan: retry it at the 1 s pace.
      if (!open_errors_.empty()) next_check_ = std::min(next_check_, steady::now() + s_.check_interval(true));
    }
  }

 private:
  struct name_status {
    std::string name;
    int error = 0;  // errno of stat, or EISDIR/EINVAL for a non-regular file
    file_id id;
    bool moved_away = false;  // not a followed name: where one was renamed to
    std::string shown_as;     // moved_away: the followed name it had (for -H)
    bool same_as(const name_status& o) const {
      return name == o.name && error == o.error && id == o.id && moved_away == o.moved_away;
    }
  };
  // A running follower's descriptor, for the check.
  struct probe {
    std::shared_ptr<followed_file> file;
    int fd = -1;
  };
  struct listing {
    std::vector<name_status> names;  // moved-away names first, then each PATH's, in order, once each
    bool blind_spots = false;  // something changes that inotify would not report (see check_interval)
    std::vector<std::pair<int, std::string>> watches;  // (wd, directory)
    std::vector<std::pair<std::string, bool>> specs_matched;  // glob spec -> matched anything
  };
  struct opened {
    bool moved_away = false;
    std::string shown_as;
    std::string name;
    int fd = -1;
    int error = 0;
    file_id id;
    std::uint64_t size = 0;
    std::string head;                 // first fingerprint_bytes bytes
    std::uint64_t end_of_last_line = 0;  // for --from-end: just past the last '\n'
  };

  // resolve() stats st.name and sets st.error or st.id. Blocking.
  static void resolve(name_status& st) {
    struct stat info {};
    if (::stat(st.name.c_str(), &info) != 0) {
      st.error = errno;
    } else if (!S_ISREG(info.st_mode)) {
      st.error = S_ISDIR(info.st_mode) ? EISDIR : EINVAL;
    } else {
      st.error = 0;
      st.id = {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
    }
  }

  // Step 1 (blocking pool).
  listing list_names(const std::vector<std::pair<std::string, std::string>>& moved) {
    listing out;
    const bool watching = s_.inotify_fd >= 0;
    std::set<std::string> seen;
    std::set<std::string> dirs;
    for (const auto& [name, shown_as] : moved) {
      name_status st;
      st.name = name;
      st.moved_away = true;
      st.shown_as = shown_as;
      struct stat info {};
      if (::stat(name.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) continue;  // gone again: nothing to read
      st.id = {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
      out.names.push_back(std::move(st));
    }
    for (const auto& spec : s_.opts.paths) {
      auto [spec_dir, spec_base] = split_path(spec);
      if (!has_glob_chars(spec_dir))
        dirs.insert(spec_dir);
      else
        out.blind_spots = true;  // a new directory matching the pattern is in no watched directory
      auto names = expand_spec(spec);
      if (has_glob_chars(spec)) out.specs_matched.emplace_back(spec, !names.empty());
      for (auto& name : names) {
        if (!seen.insert(name).second) continue;
        name_status st;
        st.name = name;
        resolve(st);
        if (st.error == 0) {
          dirs.insert(split_path(name).first);
          // A symlinked name: its file's writes are events of the target's
          // directory, which is not watched.
          struct stat link {};
          if (watching && ::lstat(name.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) out.blind_spots = true;
        }
        out.names.push_back(std::move(st));
      }
    }
    if (watching) {
      // Re-adding a watch is harmless (same wd); a directory that does not
      // exist yet is tried again at the next scan (checks come every second
      // meanwhile: its creation is no event we would see).
      for (const auto& dir : dirs) {
        int wd = ::inotify_add_watch(s_.inotify_fd, dir.c_str(), watch_mask);
        if (wd >= 0)
          out.watches.emplace_back(wd, dir);
        else
          out.blind_spots = true;
      }
    }
    return out;
  }

  // Step 3 (blocking pool).
  static opened open_name(const std::string& name, bool want_end) {
    opened o;
    o.name = name;
    if (fault_eacces(name)) {  // test hook: GORO_TAIL_FAULT_EACCES (session.hpp)
      o.error = EACCES;
      return o;
    }
    o.fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (o.fd < 0) {
      o.error = errno;
      return o;
    }
    struct stat info {};
    if (::fstat(o.fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      o.error = errno != 0 ? errno : EINVAL;
      ::close(o.fd);
      o.fd = -1;
      return o;
    }
    o.id = {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
    o.size = static_cast<std::uint64_t>(info.st_size);
    char head[fingerprint_bytes];
    ssize_t n = ::pread(o.fd, head, sizeof head, 0);
    if (n > 0) o.head.assign(head, static_cast<std::size_t>(n));
    if (want_end && o.size > 0) {
      // Start after the last complete line, so a partial last line is
      // printed whole once its writer finishes it.
      std::uint64_t span = std::min<std::uint64_t>(o.size, 64 * 1024);
      std::vector<char> tail_bytes(span);
      ssize_t got = ::pread(o.fd, tail_bytes.data(), span, static_cast<off_t>(o.size - span));
      o.end_of_last_line = o.size;
      if (got == static_cast<ssize_t>(span)) {
        std::size_t i = span;
        while (i > 0 && tail_bytes[i - 1] != '\n') --i;
        if (i > 0)
          o.end_of_last_line = o.size - span + i;
        else if (span == o.size)
          o.end_of_last_line = 0;  // the whole file is one unfinished line
      }
    }
    return o;
  }

  // wait_for_change() runs on the blocking pool, for as long as the names
  // stay put (idle: forever). It sleeps until a rescan poke (inotify), the
  // next check, or root; then lists the names (step 1) and, at a check,
  // fstats every running follower's file and pokes those that changed.
  // It returns the listing when steps 2-4 have something to do, nullopt
  // once root is cancelled.
  //
  // Why a long call rather than one blocking() per tick: an idle --poll
  // tick is then one timed wake-up of this thread plus the stat calls, as
  // in GNU tail. A fiber's timer would wake a worker, which wakes a pool
  // thread, which wakes a worker again, each tick: several times the CPU.
  // The cost is one pool thread held for the run. Everything here is safe
  // off a worker: goro::select and the table's goro::mutex block a plain
  // thread, poke() is a try_send, and the tracker fiber (sole user of the
  // tracker's members) is parked in blocking() meanwhile.
  std::optional<listing> wait_for_change() {
    for (;;) {
      steady::duration wait = next_check_ - steady::now();
      if (wait > steady::duration::zero())
        goro::select(goro::on_recv(s_.rescan), goro::on_done(s_.root), goro::on_timeout(wait));
      if (s_.root.err()) return std::nullopt;
      const bool check = steady::now() >= next_check_;
      if (check) check_files();
      // Every name resolving to the same file as at the last scan, which
      // left each bound to a running follower (nothing to open, retry or
      // retire), means steps 2-4 would rebuild the same table: stay here.
      // This is what an idle --poll tick always is.
      std::optional<listing> found;
      if (!(settled_ && literal_names_unchanged())) {
        found = list_names(take_moved());
        // A listing may show a blind spot (a watched directory went away):
        // the next check comes sooner then.
        blind_spots_ = found->blind_spots;
      }
      // A name that failed to open is retried at the next check: as soon as
      // with blind spots (1 s), not after the 10 s inotify safety net.
      steady::time_point due = steady::now() + s_.check_interval(blind_spots_ || !open_errors_.empty());
      next_check_ = check ? due : std::min(next_check_, due);
      if (!found) continue;
      if (!settled_ || !same_names(found->names)) return found;
      std::lock_guard lock(s_.table.mu);
      register_watches(*found);
    }
  }

  // literal_names_unchanged(): the quick form of "list the names and
  // compare" for the usual --poll case, without building a listing (no
  // allocation per name per tick): only literal PATHs, no inotify (so no
  // watches to renew, no renamed-away names), and every name stats as in
  // last_names_ (which, then, is exactly the PATHs in order). Blocking.
  bool literal_names_unchanged() {
    if (!literal_only_ || s_.inotify_fd >= 0) return false;
    name_status now;
    for (const auto& last : last_names_) {
      now.name.assign(last.name);  // reuses now.name's buffer after the first
      resolve(now);
      if (now.error != last.error || (now.error == 0 && now.id != last.id)) return false;
    }
    return true;
  }

  // check_files() is the check: fstat every running follower's descriptor
  // and poke those whose file changed since they last reached end of file.
  // The buffers are members, reused: no allocation per tick. Blocking.
  void check_files() {
    probes_.clear();
    {
      std::lock_guard lock(s_.table.mu);
      for (auto& [id, f] : s_.table.files)
        if (f->running && f->fd >= 0) probes_.push_back({f, f->fd});
    }
    stamps_.clear();
    for (const auto& p : probes_) {
      // p.fd may have been closed (and even reused) since it was listed, if
      // its follower just ended: then this only pokes no one (see below).
      struct stat info {};
      stamps_.push_back(::fstat(p.fd, &info) == 0 ? std::optional<file_stamp>(stamp_of(info)) : std::nullopt);
    }
    std::lock_guard lock(s_.table.mu);
    poke_changed();
    probes_.clear();  // drop the references now, not a tick later
  }

  // take_moved() hands over the watcher's list of renamed-away names.
  std::vector<std::pair<std::string, std::string>> take_moved() {
    std::vector<std::pair<std::string, std::string>> moved;
    std::lock_guard lock(s_.table.mu);
    moved.swap(s_.table.moved_away);
    return moved;
  }

  // scan(): steps 2-4 for the names found in step 1 (tracker fiber).
  void scan(bool initial, listing found) {
    blind_spots_ = found.blind_spots;
    report_missing(found, initial);
    last_names_ = found.names;

    // Step 2.
    std::vector<name_status> to_open;
    std::map<file_table::name_key, std::shared_ptr<followed_file>> previous;
    {
      std::lock_guard lock(s_.table.mu);
      register_watches(found);
      previous = s_.table.names;
      std::map<file_table::name_key, std::shared_ptr<followed_file>> bound;
      for (auto& st : found.names) {
        if (st.error != 0) continue;
        auto it = s_.table.files.find(st.id);
        if (it != s_.table.files.end() && it->second->running) {
          if (!st.moved_away) bind(bound, st.name, it->second);
        } else {
          to_open.push_back(st);
        }
      }
      s_.table.names = std::move(bound);
      retire_unnamed();
    }

    // Step 3.
    std::vector<opened> opens;
    if (!to_open.empty()) {
      bool want_end = initial && s_.opts.from_end;
      opens = goro::blocking([&] {
        std::vector<opened> out;
        for (auto& st : to_open) {
          out.push_back(open_name(st.name, want_end && !st.moved_away));
          out.back().moved_away = st.moved_away;
          out.back().shown_as = st.shown_as;
        }
        return out;
      });
    }

    // Step 4.
    std::lock_guard lock(s_.table.mu);
    for (auto& o : opens) {
      if (o.error != 0 && o.moved_away) continue;
      if (o.error != 0) {
        report_open_error(o.name, o.error);
        continue;
      }
      if (auto bad = open_errors_.find(o.name); bad != open_errors_.end()) {
        warn(o.name + ": readable again");
        open_errors_.erase(bad);
      }
      start_or_bind(o, initial);
    }
    for (auto& [key, file] : previous) {
      auto now = s_.table.names.find(key);
      if (now == s_.table.names.end() || now->second != file) add(s_.stats.rotations);
    }
    retire_unnamed();
    // Whether the next listing, if the same, needs steps 2-4 again.
    settled_ = std::all_of(found.names.begin(), found.names.end(), [&](const name_status& st) {
      if (st.error != 0) return true;  // missing: a change of its listing brings it back here
      if (st.moved_away) return false;  // (moved names are always read by a full scan)
      auto it = s_.table.names.find(split_path(st.name));
      return it != s_.table.names.end() && it->second->id == st.id && it->second->running;
    });
  }

  bool same_names(const std::vector<name_status>& names) const {
    return std::equal(names.begin(), names.end(), last_names_.begin(), last_names_.end(),
                      [](const name_status& a, const name_status& b) { return a.same_as(b); });
  }

  // register_watches() records the inotify watches of found (under the table lock).
  void register_watches(const listing& found) {
    for (auto& [wd, dir] : found.watches) {
      auto& spellings = s_.table.watches[wd];
      if (std::find(spellings.begin(), spellings.end(), dir) == spellings.end()) spellings.push_back(dir);
    }
  }

  // poke_changed() is the end of a check (under the table lock): poke a
  // follower only if its file changed since it last reached end of file.
  // Compared with seen as it is now, not when the probes were listed: a
  // follower that read on meanwhile is not poked for what it already has.
  // A follower without seen is still reading (or retrying after an error on
  // its own timer) and needs no poke; one whose descriptor changed ended
  // meanwhile (a new follower starts by reading).
  void poke_changed() {
    for (std::size_t i = 0; i < probes_.size(); ++i) {
      followed_file& f = *probes_[i].file;
      if (!f.running || f.fd != probes_[i].fd || !f.seen) continue;
      if (!stamps_[i] || *stamps_[i] != *f.seen) f.wake();
    }
  }

  // bind() records that name points to f (and so f is not retiring).
  void bind(std::map<file_table::name_key, std::shared_ptr<followed_file>>& names, const std::string& name,
            const std::shared_ptr<followed_file>& f) {
    names[split_path(name)] = f;
    f->last_path = name;
    f->retire_at.reset();
  }

  // retire_unnamed(): running files that no name points to read on for
  // --rotate-wait, then stop. Called under the table lock.
  void retire_unnamed() {
    std::set<followed_file*> named;
    for (auto& [key, f] : s_.table.names) named.insert(f.get());
    for (auto& [id, f] : s_.table.files) {
      if (!f->running || named.count(f.get()) != 0 || f->retire_at) continue;
      f->retire_at = steady::now() + s_.opts.rotate_wait;
      f->wake();
    }
  }

  // start_or_bind() (under the table lock) binds o's name to its file and
  // makes sure a follower reads it, from the right offset.
  void start_or_bind(opened& o, bool initial) {
    auto it = s_.table.files.find(o.id);
    if (it != s_.table.files.end() && it->second->running) {
      ::close(o.fd);  // raced with a rename: the file is already followed
      if (!o.moved_away) bind(s_.table.names, o.name, it->second);
      return;
    }
    std::shared_ptr<followed_file> f;
    std::uint64_t start = 0;
    if (it != s_.table.files.end()) {
      // Followed earlier in this run (retired, then found again under a
      // followed name): go on where its last follower stopped.
      f = it->second;
      if (matches(o, f->fingerprint, f->resume_offset)) {
        start = f->resume_offset;
      } else {
        add(s_.stats.truncations);
        f->committed.store(0, std::memory_order_release);  // release: pairs with snapshot()
      }
    } else {
      f = std::make_shared<followed_file>(o.id, o.moved_away ? o.shown_as : o.name, s_.opts.with_filename);
      s_.table.files[o.id] = f;
      add(s_.stats.files);
      if (auto cp = s_.table.loaded.find(o.id); cp != s_.table.loaded.end()) {
        if (matches(o, cp->second.fingerprint, cp->second.offset)) {
          start = cp->second.offset;
        } else {
          warn(o.name + ": not the file the state file recorded (replaced or truncated); reading it from the start");
        }
        s_.table.loaded.erase(cp);
      } else if (initial && s_.opts.from_end) {
        start = o.end_of_last_line;
      }
      f->committed.store(start, std::memory_order_release);  // release: pairs with snapshot()
    }
    f->fingerprint = o.head;
    f->running = true;
    f->fd = o.fd;
    f->seen.reset();
    if (o.moved_away) {
      // Rotated away before we opened it: read it like any rotated file.
      f->last_path = o.name;
      f->retire_at = steady::now() + s_.opts.rotate_wait;
      if (it == s_.table.files.end()) add(s_.stats.rotations);  // never seen under its followed name
    } else {
      bind(s_.table.names, o.name, f);
    }
    start_follower(s_, f, o.fd, start, o.head);
  }

  // matches(): is the open file the one a checkpoint describes? Its head must
  // start with the recorded fingerprint, and it must not be shorter than the
  // recorded offset.
  static bool matches(const opened& o, const std::string& fingerprint, std::uint64_t offset) {
    if (o.size < offset) return false;
    if (o.head.size() < fingerprint.size()) return false;
    return o.head.compare(0, fingerprint.size(), fingerprint) == 0;
  }

  // Missing names are warned about once per disappearance, not per scan.
  void report_missing(const listing& found, bool initial) {
    for (auto& st : found.names) {
      if (has_glob_chars(st.name) && st.error == ENOENT) continue;
      if (st.error == 0) {
        if (missing_.erase(st.name) != 0 && !initial) warn(st.name + ": appeared; following it");
        continue;
      }
      if (!missing_.insert(st.name).second) continue;
      if (st.error == ENOENT)
        warn(st.name + ": " + (initial ? "no such file yet" : "has disappeared") + "; following it by name");
      else
        warn(st.name + ": " + std::strerror(st.error) + " (retrying)");
    }
    if (initial)
      for (auto& [spec, matched] : found.specs_matched)
        if (!matched) warn(spec + ": no file matches yet; new matches will be followed");
  }

  void report_open_error(const std::string& name, int error) {
    auto [it, fresh] = open_errors_.emplace(name, error);
    if (!fresh && it->second == error) return;
    it->second = error;
    warn(name + ": cannot open: " + std::strerror(error) + " (retrying)");
  }

  session& s_;
  // --- tracker fiber only (or wait_for_change while that fiber waits for it) ---
  bool blind_spots_ = false;                // the last scan found some
  bool settled_ = false;                    // the last scan bound every name it found
  steady::time_point next_check_;           // when wait_for_change checks the followed files next
  std::vector<name_status> last_names_;     // what the last full scan found
  bool literal_only_ = false;               // no PATH is a glob
  std::vector<probe> probes_;               // check_files' buffers
  std::vector<std::optional<file_stamp>> stamps_;
  std::set<std::string> missing_;           // names reported missing (tracker fiber only)
  std::map<std::string, int> open_errors_;  // names that failed to open, and why
};

// watcher: the inotify fiber. Content events poke the follower of the name
// (or, for names nobody follows, the followers of rotated-away files);
// structural events poke the tracker; an overflow pokes everyone, so every
// file is read to its end and every name resolved again: nothing is lost.
// is_followed_name(): does a PATH argument name dir/base (literally, or as
// a glob whose directory part is plain)?
inline bool is_followed_name(const session& s, const std::string& dir, const std::string& base) {
  for (const auto& spec : s.opts.paths) {
    auto [spec_dir, spec_base] = split_path(spec);
    if (spec_dir != dir) continue;
    if (has_glob_chars(spec_base) ? ::fnmatch(spec_base.c_str(), base.c_str(), FNM_PERIOD) == 0 : spec_base == base)
      return true;
  }
  return false;
}

inline void watch_inotify(session& s) {
  std::vector<char> buffer(64 * 1024);  // heap: fiber stacks are small
  std::map<std::uint32_t, std::string> renames;  // IN_MOVED_FROM cookie -> the followed name it left ("" if none)
  const std::uint64_t overflow_every = fault_overflow_every();  // test hook (session.hpp)
  std::uint64_t reads = 0;
  while (!s.root.err()) {
    ssize_t n = ::read(s.inotify_fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (goro::io::wait_readable(s.inotify_fd, s.root)) break;
        continue;
      }
      warn(std::string("inotify read failed: ") + std::strerror(errno) + "; falling back to 1 s polling");
      s.inotify_broken.store(true, std::memory_order_relaxed);
      (void)s.rescan.try_send(std::monostate{});  // the tracker shortens its check interval now
      break;
    }
    if (overflow_every != 0 && n > 0 && ++reads % overflow_every == 0) {
      // GORO_TAIL_FAULT_OVERFLOW_EVERY: drop what was read, as the kernel
      // drops events when its queue is full, and report the overflow.
      inotify_event overflow{};
      overflow.wd = -1;
      overflow.mask = IN_Q_OVERFLOW;
      std::memcpy(buffer.data(), &overflow, sizeof overflow);
      n = static_cast<ssize_t>(sizeof overflow);
    }
    bool rescan = false, wake_retired = false;
    for (ssize_t pos = 0; pos < n;) {
      inotify_event event;
      std::memcpy(&event, buffer.data() + pos, sizeof event);  // the buffer is not aligned for it
      std::string name = event.len > 0 ? std::string(buffer.data() + pos + sizeof event) : std::string();
      pos += static_cast<ssize_t>(sizeof event + event.len);
      if (event.mask & IN_Q_OVERFLOW) {
        add(s.stats.overflows);
        warn("inotify queue overflowed; rescanning every followed file");
        rescan = true;
        s.table.wake_all();
        continue;
      }
      std::vector<std::string> dirs;
      {
        std::lock_guard lock(s.table.mu);
        auto it = s.table.watches.find(event.wd);
        if (it != s.table.watches.end()) {
          dirs = it->second;
          if (event.mask & IN_IGNORED) s.table.watches.erase(it);  // the directory went away
        }
      }
      if (event.mask & IN_IGNORED) {
        rescan = true;
        continue;
      }
      if ((event.mask & IN_MOVED_FROM) && !name.empty()) {
        std::string followed;
        for (auto& dir : dirs)
          if (followed.empty() && is_followed_name(s, dir, name)) followed = dir == "." ? name : dir + "/" + name;
        if (renames.size() > 256) renames.clear();  // unmatched cookies (moved out of watched dirs)
        renames[event.cookie] = followed;
      }
      if ((event.mask & IN_MOVED_TO) && !name.empty() && !dirs.empty()) {
        auto from = renames.find(event.cookie);
        if (from != renames.end()) {
          if (!from->second.empty() && !is_followed_name(s, dirs.front(), name)) {
            std::lock_guard lock(s.table.mu);
            s.table.moved_away.emplace_back(dirs.front() == "." ? name : dirs.front() + "/" + name, from->second);
          }
          renames.erase(from);
        }
      }
      bool known = false;
      if (!name.empty())
        for (auto& dir : dirs) known = s.table.wake_name(dir, name) || known;
      if (!known && (event.mask & (IN_MODIFY | IN_CLOSE_WRITE))) wake_retired = true;
      if (event.mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |
                        IN_MOVE_SELF | IN_UNMOUNT)) {
        rescan = true;
        wake_retired = true;
      }
    }
    if (rescan) (void)s.rescan.try_send(std::monostate{});
    if (wake_retired) s.table.wake_retired();
  }
}

}  // namespace tail
