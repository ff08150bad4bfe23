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
  // then a scan per poke or interval until root is cancelled.
  void run() {
    scan(true);
    while (!s_.root.err()) {
      goro::select(goro::on_recv(s_.rescan), goro::on_done(s_.root), goro::on_timeout(s_.idle_interval()));
      if (s_.root.err()) break;
      scan(false);
    }
  }

 private:
  struct name_status {
    std::string name;
    int error = 0;  // errno of stat, or EISDIR/EINVAL for a non-regular file
    file_id id;
    bool moved_away = false;  // not a followed name: where one was renamed to
    std::string shown_as;     // moved_away: the followed name it had (for -H)
  };
  struct listing {
    std::vector<name_status> names;
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

  // Step 1 (blocking pool).
  listing list_names(const std::vector<std::pair<std::string, std::string>>& moved) {
    listing out;
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
      if (!has_glob_chars(spec_dir)) dirs.insert(spec_dir);
      auto names = expand_spec(spec);
      if (has_glob_chars(spec)) out.specs_matched.emplace_back(spec, !names.empty());
      for (auto& name : names) {
        if (!seen.insert(name).second) continue;
        name_status st;
        st.name = name;
        struct stat info {};
        if (::stat(name.c_str(), &info) != 0) {
          st.error = errno;
        } else if (!S_ISREG(info.st_mode)) {
          st.error = S_ISDIR(info.st_mode) ? EISDIR : EINVAL;
        } else {
          st.id = {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
          dirs.insert(split_path(name).first);
        }
        out.names.push_back(std::move(st));
      }
    }
    if (s_.inotify_fd >= 0) {
      // Re-adding a watch is harmless (same wd); a directory that does not
      // exist yet is tried again at the next scan.
      for (const auto& dir : dirs) {
        int wd = ::inotify_add_watch(s_.inotify_fd, dir.c_str(), watch_mask);
        if (wd >= 0) out.watches.emplace_back(wd, dir);
      }
    }
    return out;
  }

  // Step 3 (blocking pool).
  static opened open_name(const std::string& name, bool want_end) {
    opened o;
    o.name = name;
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

  void scan(bool initial) {
    std::vector<std::pair<std::string, std::string>> moved;
    {
      std::lock_guard lock(s_.table.mu);
      moved.swap(s_.table.moved_away);
    }
    listing found = goro::blocking([&] { return list_names(moved); });
    report_missing(found, initial);

    // Step 2.
    std::vector<name_status> to_open;
    std::map<file_table::name_key, std::shared_ptr<followed_file>> previous;
    {
      std::lock_guard lock(s_.table.mu);
      for (auto& [wd, dir] : found.watches) {
        auto& spellings = s_.table.watches[wd];
        if (std::find(spellings.begin(), spellings.end(), dir) == spellings.end()) spellings.push_back(dir);
      }
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
  while (!s.root.err()) {
    ssize_t n = ::read(s.inotify_fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (goro::io::wait_readable(s.inotify_fd, s.root)) break;
        continue;
      }
      warn(std::string("inotify read failed: ") + std::strerror(errno) + "; falling back to 1 s polling");
      break;
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
