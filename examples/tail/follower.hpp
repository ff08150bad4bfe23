// SPDX-License-Identifier: MIT
// follower: the fiber that reads one file (one inode) and turns its bytes
// into line batches, in file order.
//
// State machine of a follower (one iteration per wake-up):
//   read    read the file from read_offset_ to its end, 256 KiB per blocking
//           call, cutting complete lines into batches (a held partial line
//           waits in pending_ until its newline arrives);
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
//   * Only this fiber touches fd_, read_offset_, pending_ and batch_; the
//     blocking read runs while this fiber is parked, so it may use them too.
//   * running is set by the tracker before spawning and cleared here, under
//     file_table::mu, as the last thing that touches the table.
#pragma once

#include "session.hpp"

#include <goro/goro.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <sys/stat.h>
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
        chunk c = goro::blocking([this] { return read_chunk(); });
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
    std::size_t bytes = 0;   // bytes read into buffer_ at read_offset_
  };

  // read_chunk() runs on the blocking pool (this fiber is parked meanwhile).
  chunk read_chunk() {
    chunk c;
    if (fault_eacces(f_->name)) {  // test hook: GORO_TAIL_FAULT_EACCES (session.hpp)
      c.error = EACCES;
      return c;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      c.error = errno;
      return c;
    }
    c.stamp = stamp_of(st);
    if (static_cast<std::uint64_t>(st.st_size) < read_offset_) {
      c.truncated = true;
      return c;
    }
    // The head tells a file rewritten in place (truncated, then regrown past
    // our offset before we looked) from the one we were reading.
    {
      char head[fingerprint_bytes];
      ssize_t n = pread_fully(head, sizeof head, 0);
      if (n < 0) {
        c.error = errno;
        return c;
      }
      std::size_t got = static_cast<std::size_t>(n);
      if (got < fingerprint_.size() || std::memcmp(head, fingerprint_.data(), fingerprint_.size()) != 0) {
        c.truncated = true;
        return c;
      }
      if (got > fingerprint_.size()) {
        fingerprint_.assign(head, got);
        c.new_fingerprint = true;
      }
    }
    buffer_.resize(read_chunk_bytes);
    ssize_t n = pread_fully(buffer_.data(), buffer_.size(), read_offset_);
    if (n < 0) {
      c.error = errno;
      return c;
    }
    c.bytes = static_cast<std::size_t>(n);
    return c;
  }

  // pread until size bytes or end of file.
  ssize_t pread_fully(char* out, std::size_t size, std::uint64_t offset) {
    std::size_t done = 0;
    while (done < size) {
      ssize_t n = ::pread(fd_, out + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return -1;
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return static_cast<ssize_t>(done);
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

  // consume() appends fresh bytes to pending_ and sends every complete line.
  // A line longer than --max-line goes out in pieces of max_line bytes, each
  // ending in '\n' (counted once per line in split_lines).
  bool consume(const char* data, std::size_t size) {
    pending_.append(data, size);
    const std::size_t max_line = s_.opts.max_line;
    std::size_t pos = 0;
    for (;;) {
      std::size_t window = std::min(pending_.size() - pos, max_line + 1);
      if (window == 0) break;
      const char* start = pending_.data() + pos;
      const char* newline = static_cast<const char*>(std::memchr(start, '\n', window));
      if (newline != nullptr) {
        std::size_t length = static_cast<std::size_t>(newline - start) + 1;
        append_line(start, length, false, pending_start_ + pos + length);
        pos += length;
        splitting_ = false;
      } else if (pending_.size() - pos > max_line) {
        if (!splitting_) add(s_.stats.split_lines);
        splitting_ = true;
        append_line(start, max_line, true, pending_start_ + pos + max_line);
        pos += max_line;
      } else {
        break;  // a partial line: hold it until its newline
      }
      if (batch_.lines >= s_.batch_line_limit()) {
        commit_consumed(pos);
        pos = 0;
        if (!flush_batch(false)) return false;
      }
    }
    commit_consumed(pos);
    return flush_batch(false);
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

  session& s_;
  std::shared_ptr<followed_file> f_;
  int fd_;
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
