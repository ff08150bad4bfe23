// SPDX-License-Identifier: MIT
// follower: the fiber that reads one file (one inode) and turns its bytes
// into line batches, in file order.
//
// State machine of a follower (one iteration per wake-up):
//   read    read the file from read_offset_ to its end, 256 KiB at a time,
//           from the page cache on this worker (goro::io::read_cached), and
//           through a blocking call only when the data must come from the
//           device (and always on a network file system); cut complete
//           lines into batches (a held partial line waits in pending_ until
//           its newline arrives);
//   check   each read first compares the size and the first bytes with what
//           was seen before: smaller, or a different head, is a truncation
//           (copytruncate, truncate to zero, rewrite) and restarts at 0;
//   retire  when no followed name points to the file any more (rotation,
//           delete) the tracker sets retire_at = now + --rotate-wait; the
//           follower keeps reading until then (writers append to their old
//           descriptor until they reopen) and stops at the first end of file
//           after it;
//   wait    publish what the file looked like at end of file (followed_file::
//           seen), then park until poked (inotify event, overflow rescan, or
//           the tracker's check found the file changed) or root is cancelled.
//           An idle follower has no timer: only a retiring one (its deadline,
//           and under inotify a 100 ms look) or one whose read failed (retry)
//           wakes up by itself. That is what keeps 50 idle files at ~0 CPU.
//
// Invariants:
//   * pending_start_ is the file offset of pending_[0]; every byte before it
//     is in a batch already sent (or being built in batch_).
//   * Only this fiber touches fd_, read_offset_, pending_ and batch_; a
//     blocking read runs while this fiber is parked, so it may use them too.
//   * running is set by the tracker before spawning and cleared here, under
//     file_table::mu, as the last thing that touches the table.
#pragma once

#include "session.hpp"

#include <goro/goro.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <vector>

namespace tail {

inline constexpr std::size_t read_chunk_bytes = 256 * 1024;

class follower {
 public:
  // Takes ownership of fd, opened on f's file; reading starts at start.
  // fingerprint: the head of the file as the tracker read it at open.
  follower(session& s, std::shared_ptr<followed_file> f, int fd, std::uint64_t start, std::string fingerprint)
      : s_(s), f_(std::move(f)), fd_(fd), read_offset_(start), pending_start_(start),
        fingerprint_(std::move(fingerprint)) {}

  // run() is the fiber body. It returns on shutdown or once the file is retired.
  void run() {
    bool cut_short = false;  // a send gave up: shutdown
    int reported_error = 0;
    while (!cut_short && !s_.root.err()) {
      // read: everything there is now.
      bool at_eof = false;
      file_stamp eof_stamp;  // the fstat of the read that found end of file
      while (!s_.root.err()) {
        chunk c = read_next();
        if (c.error != 0) {
          if (c.error != reported_error) warn(f_->name + ": cannot read: " + std::strerror(c.error) + " (retrying)");
          reported_error = c.error;
          break;
        }
        if (reported_error != 0) warn(f_->name + ": readable again");
        reported_error = 0;
        if (c.truncated) {
          if (!restart_after_truncation()) cut_short = true;
          if (cut_short) break;
          continue;
        }
        if (c.new_fingerprint) {
          std::lock_guard lock(s_.table.mu);
          f_->fingerprint = fingerprint_;
        }
        if (c.bytes == 0) {
          at_eof = true;
          eof_stamp = c.stamp;
          break;
        }
        read_offset_ += c.bytes;
        if (!consume(buffer_.data(), c.bytes)) {
          cut_short = true;
          break;
        }
      }
      if (cut_short || s_.root.err()) break;

      // retire: past the grace period and nothing left to read.
      std::optional<steady::time_point> retire_at;
      {
        std::lock_guard lock(s_.table.mu);
        retire_at = f_->retire_at;
        // Everything up to eof_stamp has been read: the tracker's check pokes
        // us only once fstat says something else. After a failed read there
        // is nothing to compare with: we retry on our own timer instead.
        f_->seen = at_eof ? std::optional<file_stamp>(eof_stamp) : std::nullopt;
      }
      steady::time_point now = steady::now();
      if (retire_at && at_eof && now >= *retire_at) {
        // The writer has moved on: a partial last line will never be
        // completed here. Print it rather than lose it (counted).
        if (!pending_.empty()) {
          add(s_.stats.unterminated);
          append_line(pending_.data(), pending_.size(), true, pending_start_ + pending_.size());
          pending_start_ += pending_.size();
          pending_.clear();
          if (!flush_batch(false)) break;
        }
        std::lock_guard lock(s_.table.mu);
        if (f_->retire_at && now >= *f_->retire_at) break;
        continue;  // a name points here again: keep following
      }

      // wait: a poke or shutdown; a timeout only when retiring (the
      // deadline, or a look every retired_interval) or retrying a failed read.
      std::optional<steady::duration> timeout;
      if (retire_at) {
        timeout = std::max(*retire_at - now, steady::duration(1ms));
        if (auto every = s_.retired_interval()) timeout = std::min(*timeout, *every);
      } else if (!at_eof) {
        timeout = s_.retry_interval();
      }
      if (timeout)
        goro::select(goro::on_recv(f_->poke), goro::on_done(s_.root), goro::on_timeout(*timeout));
      else
        goro::select(goro::on_recv(f_->poke), goro::on_done(s_.root));
    }
    {
      // A held partial line stays unprinted; a later follower (or the next
      // run, through the committed offset) starts at its first byte.
      std::lock_guard lock(s_.table.mu);
      f_->running = false;
      f_->resume_offset = pending_start_;
      f_->fd = -1;  // a check that fstats fd_ after this (closed or reused) only pokes no one
      f_->seen.reset();
    }
    ::close(fd_);
    s_.followers.done();
  }

 private:
  struct chunk {
    int error = 0;           // errno of a failed fstat/pread
    file_stamp stamp;        // what the fstat before the reads said
    bool truncated = false;  // the file shrank below read_offset_ or its head changed
    bool new_fingerprint = false;
    bool needs_blocking = false;  // on_worker: something was not cached; nothing was changed
    std::size_t bytes = 0;   // bytes read into buffer_ at read_offset_
  };

  // read_next() is one read step: the page cache first, on this worker (a
  // file being followed was just written: no thread hop), then the pool for
  // what would wait for a device or a file server.
  chunk read_next() {
    if (fault_eacces(f_->name)) {  // test hook: GORO_TAIL_FAULT_EACCES (session.hpp), one attempt per step
      chunk c;
      c.error = EACCES;
      return c;
    }
    if (local_fs_) {
      chunk c = read_chunk(true);
      if (!c.needs_blocking) return c;
    }
    return goro::blocking([this] { return read_chunk(false); });
  }

  // read_chunk() checks the file (size, head) and reads what follows
  // read_offset_ into buffer_. on_worker: it runs on this fiber's worker and
  // must not block, so the stamp comes from the inode as cached (statx
  // AT_STATX_DONT_SYNC: no round trip to a file server) and the reads from
  // the page cache (goro::io::read_cached); when something is not cached it
  // gives up with needs_blocking, having changed nothing, and the caller
  // runs it again on the blocking pool (on_worker false; this fiber is
  // parked meanwhile). Only on a local file system (local_fs_): on a
  // network one the cached size and pages may be stale until a round trip
  // to the server, which fstat and pread make; there every read takes the
  // pool.
  chunk read_chunk(bool on_worker) {
    chunk c;
    if (!on_worker && !fs_checked_) {  // once, on the pool (fstatfs may ask a server)
      fs_checked_ = true;
      struct statfs fs {};
      local_fs_ = ::fstatfs(fd_, &fs) == 0 && !is_network_fs(fs.f_type);
    }
    if (on_worker) {
      struct statx info {};
      if (::statx(fd_, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE | STATX_MTIME, &info) != 0) {
        c.needs_blocking = true;  // the pool's fstat reports the error
        return c;
      }
      c.stamp = {info.stx_size, static_cast<std::int64_t>(info.stx_mtime.tv_sec) * 1'000'000'000 +
                                    info.stx_mtime.tv_nsec};
    } else {
      struct stat st {};
      if (::fstat(fd_, &st) != 0) {
        c.error = errno;
        return c;
      }
      c.stamp = stamp_of(st);
    }
    if (c.stamp.size < read_offset_) {
      c.truncated = true;
      return c;
    }
    // The head tells a file rewritten in place (truncated, then regrown past
    // our offset before we looked) from the one we were reading.
    const std::size_t known_head = fingerprint_.size();
    int error = 0;
    char head[fingerprint_bytes];
    const std::size_t got = read_fully(head, sizeof head, 0, on_worker, error);
    if (error == 0) {
      if (got < fingerprint_.size() || std::memcmp(head, fingerprint_.data(), fingerprint_.size()) != 0) {
        c.truncated = true;
        return c;
      }
      if (got > fingerprint_.size()) {
        fingerprint_.assign(head, got);
        c.new_fingerprint = true;
      }
      buffer_.resize(read_chunk_bytes);
      c.bytes = read_fully(buffer_.data(), buffer_.size(), read_offset_, on_worker, error);
    }
    if (error == EAGAIN && on_worker) {
      // Not cached. Change nothing: the pool's run must see the head grow
      // again, or the caller would never publish the new fingerprint.
      fingerprint_.resize(known_head);
      return chunk{.needs_blocking = true};
    }
    c.error = error;
    return c;
  }

  // read_fully() reads until size bytes or end of file and returns how
  // many; error gets the errno of a failed read (0 if none). cached_only:
  // through goro::io::read_cached, stopping early at the first uncached
  // byte (EAGAIN if that is the first one).
  std::size_t read_fully(char* out, std::size_t size, std::uint64_t offset, bool cached_only, int& error) {
    std::size_t done = 0;
    error = 0;
    while (done < size) {
      std::size_t n = 0;
      if (cached_only) {
        std::error_code ec;
        n = goro::io::read_cached(fd_, out + done, size - done, offset + done, ec);
        if (ec == std::errc::resource_unavailable_try_again && done > 0) break;
        if (ec) {
          error = ec.value();
          return 0;
        }
      } else {
        ssize_t got = ::pread(fd_, out + done, size - done, static_cast<off_t>(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
          error = errno;
          return 0;
        }
        n = static_cast<std::size_t>(got);
      }
      if (n == 0) break;
      done += n;
    }
    return done;
  }

  // restart_after_truncation(): the content before read_offset_ is gone.
  // The held partial line is printed (its bytes were read; dropping them
  // would lose them), then a batch ending at offset 0 tells output to commit
  // 0, in order with the batches before it. False when shutdown cut it short.
  bool restart_after_truncation() {
    add(s_.stats.truncations);
    warn(f_->name + ": file truncated");
    if (!pending_.empty()) {
      add(s_.stats.unterminated);
      append_line(pending_.data(), pending_.size(), true, 0);
      pending_.clear();
    }
    read_offset_ = 0;
    pending_start_ = 0;
    fingerprint_.clear();
    {
      std::lock_guard lock(s_.table.mu);
      f_->fingerprint.clear();
    }
    batch_.end_offset = 0;
    batch_.reset = true;
    return flush_batch(true);
  }

  // consume() sends every complete line of the fresh bytes (data, which
  // start at file offset pending_start_ + pending_.size()) and holds the
  // partial last line in pending_. Only a held line's completion goes
  // through pending_; the lines after it are cut straight from data, so most
  // bytes are copied once, into their batch. A line longer than --max-line
  // goes out in pieces of max_line bytes, each ending in '\n' (counted once
  // per line in split_lines).
  bool consume(const char* data, std::size_t size) {
    if (!pending_.empty()) {
      const char* newline = static_cast<const char*>(std::memchr(data, '\n', size));
      const std::size_t take = newline != nullptr ? static_cast<std::size_t>(newline - data) + 1 : size;
      pending_.append(data, take);
      data += take;
      size -= take;
      bool sent = true;
      commit_consumed(cut_lines(pending_.data(), pending_.size(), pending_start_, sent));
      if (!sent) return false;
      // Either the held line is complete and gone, or data had no newline
      // and all of it is held.
      if (!pending_.empty()) return flush_batch(false);
    }
    bool sent = true;
    const std::size_t used = cut_lines(data, size, pending_start_, sent);
    pending_start_ += used;
    if (!sent) return false;
    pending_.assign(data + used, size - used);
    return flush_batch(false);
  }

  // cut_lines() appends the complete lines (and max_line pieces) of
  // [text, text + size), which starts at file offset `start`, to batches,
  // sending each full batch. Returns the bytes used: the rest is a partial
  // line. sent turns false when a send gave up (shutdown). Without a -H
  // prefix, consecutive whole lines are appended as one run: one copy per
  // run instead of one call per line.
  std::size_t cut_lines(const char* text, std::size_t size, std::uint64_t start, bool& sent) {
    const std::size_t max_line = s_.opts.max_line;
    const bool in_runs = f_->prefix.empty();
    std::size_t pos = 0;
    std::size_t run_start = 0, run_lines = 0;  // whole lines in text[run_start, pos) not yet in batch_
    auto end_run = [&] {
      if (run_lines == 0) return;
      batch_.text.append(text + run_start, pos - run_start);
      batch_.lines += run_lines;
      batch_.end_offset = start + pos;
      run_lines = 0;
    };
    for (;;) {
      std::size_t window = std::min(size - pos, max_line + 1);
      if (window == 0) break;
      const char* line = text + pos;
      const char* newline = static_cast<const char*>(std::memchr(line, '\n', window));
      if (newline != nullptr) {
        std::size_t length = static_cast<std::size_t>(newline - line) + 1;
        if (!in_runs) {
          append_line(line, length, false, start + pos + length);
        } else if (run_lines++ == 0) {
          run_start = pos;
          if (batch_.lines == 0) batch_.start_offset = start + pos;
        }
        pos += length;
        splitting_ = false;
      } else if (size - pos > max_line) {
        end_run();
        if (!splitting_) add(s_.stats.split_lines);
        splitting_ = true;
        append_line(line, max_line, true, start + pos + max_line);
        pos += max_line;
      } else {
        break;  // a partial line: the caller holds it until its newline
      }
      if (batch_.lines + run_lines >= s_.batch_line_limit()) {
        end_run();
        if (!flush_batch(false)) {
          sent = false;
          return pos;
        }
      }
    }
    end_run();
    return pos;
  }

  void commit_consumed(std::size_t pos) {
    pending_.erase(0, pos);
    pending_start_ += pos;
  }

  // append_line() adds one line (size bytes of the file, ending at
  // end_offset) to batch_.
  void append_line(const char* data, std::size_t size, bool add_newline, std::uint64_t end_offset) {
    if (batch_.lines == 0) batch_.start_offset = end_offset >= size ? end_offset - size : 0;
    batch_.text += f_->prefix;
    batch_.text.append(data, size);
    if (add_newline) {
      batch_.text += '\n';
      batch_.added_newlines.push_back(static_cast<std::uint32_t>(batch_.lines));
    }
    ++batch_.lines;
    batch_.end_offset = end_offset;
  }

  // flush_batch() hands batch_ to the stage/output. Empty batches are sent
  // only when forced (a commit of offset 0 after a truncation). Gives up
  // (false) once drain is cancelled: those lines are neither printed nor
  // committed, so a --state restart reads them again.
  bool flush_batch(bool force) {
    if (batch_.lines == 0 && !force) return true;
    batch_.file = f_;
    line_batch out = std::move(batch_);
    batch_ = line_batch{};
    if (s_.lines.send(s_.drain, std::move(out)) != goro::chan_op::ok) {
      add(s_.stats.lost_batches);
      return false;
    }
    return true;
  }

  // is_network_fs(): file systems whose cached state may lag the server's
  // (statfs(2) magic numbers), and FUSE, which may be anything.
  static bool is_network_fs(decltype(statfs::f_type) type) {
    switch (static_cast<unsigned long>(type)) {
      case 0x6969UL:      // NFS
      case 0x517BUL:      // SMB
      case 0xFF534D42UL:  // CIFS
      case 0xFE534D42UL:  // SMB2
      case 0x65735546UL:  // FUSE
      case 0x00C36400UL:  // Ceph
      case 0x5346414FUL:  // AFS
      case 0x6B414653UL:  // kAFS
      case 0x01021997UL:  // 9P
      case 0x0BD00BD0UL:  // Lustre
      case 0x47504653UL:  // GPFS
      case 0x01161970UL:  // GFS2
      case 0x7461636FUL:  // OCFS2
        return true;
      default:
        return false;
    }
  }

  session& s_;
  std::shared_ptr<followed_file> f_;
  int fd_;
  // Whether reads may try the page cache on the worker: decided by the
  // first read, on the pool (so the first read always takes the pool).
  // Written there while this fiber is parked; blocking() orders it.
  bool fs_checked_ = false;
  bool local_fs_ = false;
  std::uint64_t read_offset_;    // next byte to read
  std::string pending_;          // bytes after the last complete line
  std::uint64_t pending_start_;  // file offset of pending_[0]
  std::string fingerprint_;      // the file's head as last read
  bool splitting_ = false;       // the current line was already split at least once
  line_batch batch_;
  std::vector<char> buffer_;     // read buffer (heap: fiber stacks are small)
};

// start_follower() spawns a follower fiber for f (the caller set f->running).
inline void start_follower(session& s, std::shared_ptr<followed_file> f, int fd, std::uint64_t start,
                           std::string fingerprint) {
  s.followers.add(1);
  auto reader = std::make_shared<follower>(s, f, fd, start, std::move(fingerprint));
  goro::spawn({.name = "follow " + f->name}, [reader] { reader->run(); });
}

}  // namespace tail
