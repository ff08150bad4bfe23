// SPDX-License-Identifier: MIT
// The end of the pipeline: the optional processing stage (--workers) and the
// output fiber that owns stdout.
//
// Output writes as soon as a batch arrives, gathering whatever else is
// already queued (up to 256 KiB) into the same write(2): an idle pipeline
// flushes each line at once (low follow latency), a busy one writes big
// blocks. Only after a write returns are the batches' offsets committed.
//
// A slow stdout is the backpressure path: output blocks in write, the
// channels fill, followers block on send, reading stops. Nothing is dropped.
//
// The stage (--workers N) runs batches on a goro::worker_pool (policy block).
// Pool workers finish in any order, so each batch gets a one-shot slot
// channel, and the slots go to the orderer in submission order: the orderer
// waits for each slot in turn and passes batches on in read order.
#pragma once

#include "session.hpp"

#include <goro/goro.hpp>

#include <cerrno>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <set>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace tail {

inline constexpr std::size_t output_block_bytes = 256 * 1024;

// stdout_writer writes to standard output without blocking a worker.
//
// A pipe or terminal is reopened through /proc/self/fd/1: that gives us our
// own open file description, which we can make O_NONBLOCK without changing
// the one the shell (or the next process in the pipeline) shares, and then
// wait for room with io::wait_writable, which a context can interrupt (a
// stuck reader cannot hold up shutdown). Anything else (regular file,
// socket, or no /proc) is written through goro::blocking.
class stdout_writer {
 public:
  stdout_writer() {
    struct stat info {};
    if (::fstat(STDOUT_FILENO, &info) != 0) return;
    if (!S_ISFIFO(info.st_mode) && !S_ISCHR(info.st_mode)) return;
    int fd = ::open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return;
    fd_ = fd;
    pollable_ = true;
  }
  stdout_writer(const stdout_writer&) = delete;
  stdout_writer& operator=(const stdout_writer&) = delete;
  ~stdout_writer() {
    if (pollable_) goro::io::close(fd_);
  }

  // write_all() writes every byte of data, or returns why not (ctx ended,
  // or a write error such as EPIPE); written counts the bytes that went out.
  //
  // To a pipe, whole lines go out in writes of at most PIPE_BUF bytes, which
  // the kernel makes all-or-nothing: when shutdown gives up on a stuck
  // reader, the reader has whole lines only, and `written` ends on a line
  // boundary (a single line longer than PIPE_BUF is the exception).
  std::error_code write_all(const std::string& data, const goro::context& ctx, std::size_t& written) {
    written = 0;
    if (!pollable_) {
      int error = goro::blocking([&] { return write_loop(STDOUT_FILENO, data.data(), data.size(), &written); });
      return error != 0 ? std::error_code(error, std::system_category()) : std::error_code{};
    }
    while (written < data.size()) {
      std::size_t piece = line_aligned_piece(data, written);
      std::size_t before = written;
      int error = write_loop(fd_, data.data() + before, piece, &written);
      if (error == 0) continue;
      if (error != EAGAIN) return std::error_code(error, std::system_category());
      if (auto e = goro::io::wait_writable(fd_, ctx)) return e;
    }
    return {};
  }

 private:
  // line_aligned_piece(): how much of data, from `from`, to write next:
  // whole lines up to PIPE_BUF bytes, or one longer line.
  static std::size_t line_aligned_piece(const std::string& data, std::size_t from) {
    std::size_t left = data.size() - from;
    if (left <= PIPE_BUF) return left;
    std::size_t last = data.rfind('\n', from + PIPE_BUF - 1);
    if (last != std::string::npos && last >= from) return last + 1 - from;
    std::size_t next = data.find('\n', from + PIPE_BUF);
    return next == std::string::npos ? left : next + 1 - from;
  }

  // write_loop() writes until done, EAGAIN or an error; returns 0 or errno.
  // progress accumulates the bytes written.
  static int write_loop(int fd, const char* data, std::size_t size, std::size_t* progress) {
    std::size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd, data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        *progress += done;
        return errno;
      }
      done += static_cast<std::size_t>(n);
    }
    *progress += done;
    return 0;
  }

  int fd_ = STDOUT_FILENO;
  bool pollable_ = false;
};

// run_output() is the output fiber: write each batch, then commit its offset.
// Returns when in is closed and drained. A failed write (stdout closed, or
// hard cancelled at shutdown) stops the program (root) and makes every later
// batch count as lost; they are still taken from the channel so that no
// sender stays blocked.
// commit_written() commits what a cut-short write did get out: the batches
// wholly inside the first bytes_out bytes, and the complete lines of the
// one it stopped in. The rest counts as lost (not committed: a --state
// restart prints it).
inline void commit_written(session& s, const std::vector<line_batch>& batches, std::size_t bytes_out) {
  for (const auto& b : batches) {
    if (bytes_out >= b.text.size()) {
      b.file->committed.store(b.end_offset, std::memory_order_release);  // release: pairs with snapshot()
      add(s.stats.lines, b.lines);
      add(s.stats.bytes, b.text.size());
      bytes_out -= b.text.size();
      continue;
    }
    if (auto offset = b.offset_after(bytes_out))
      b.file->committed.store(*offset, std::memory_order_release);  // release: pairs with snapshot()
    add(s.stats.bytes, bytes_out);
    break;  // nothing after the cut went out (an empty reset batch must not commit either)
  }
}

inline void run_output(session& s, goro::chan<line_batch> in, std::atomic<int>& exit_status) {
  stdout_writer out;
  bool stdout_ok = true;
  std::string block;
  std::vector<line_batch> written;
  for (;;) {
    std::optional<line_batch> first = in.recv();
    if (!first) break;
    block.clear();
    written.clear();
    written.push_back(std::move(*first));
    // A lone batch (a follower's whole read when busy, one line when idle)
    // is written from its own text; only several are gathered into block.
    const std::string* out_text = &written.front().text;
    while (out_text->size() < output_block_bytes) {
      auto more = in.try_recv();
      if (!more) break;
      if (written.size() == 1) block += written.front().text;
      block += more.value->text;
      written.push_back(std::move(*more.value));
      out_text = &block;
    }
    if (!stdout_ok) {
      add(s.stats.lost_batches, written.size());
      continue;
    }
    std::size_t bytes_out = 0;
    if (!out_text->empty()) {
      if (auto e = out.write_all(*out_text, s.hard, bytes_out)) {
        stdout_ok = false;
        commit_written(s, written, bytes_out);
        if (e != goro::context_errc::canceled && e != goro::context_errc::deadline_exceeded) {
          warn("cannot write to stdout: " + e.message() + "; stopping");
          exit_status.store(1, std::memory_order_relaxed);  // relaxed: read after run() joined everything
          s.cancel_root();
        } else {
          warn("stdout is not draining; giving up on the lines not yet written (they are not checkpointed)");
        }
        continue;
      }
    }
    for (auto& b : written) {
      b.file->committed.store(b.end_offset, std::memory_order_release);  // release: pairs with snapshot()
      add(s.stats.lines, b.lines);
      add(s.stats.bytes, b.text.size());
    }
  }
}

// The processing stage (--workers N).
struct stage_task {
  line_batch batch;
  goro::chan<line_batch> slot;  // capacity 1: where the worker puts the processed batch
};

struct stage_slot {
  std::shared_ptr<followed_file> file;
  goro::chan<line_batch> slot;
};

// slow_stage_delay(): GORO_TAIL_SLOW_STAGE_US, a test hook that makes every
// stage task sleep, to play a slow consumer.
inline std::chrono::microseconds slow_stage_delay() {
  const char* text = std::getenv("GORO_TAIL_SLOW_STAGE_US");
  if (text == nullptr || *text == '\0') return std::chrono::microseconds(0);
  char* end = nullptr;
  long long us = std::strtoll(text, &end, 10);
  if (end == nullptr || *end != '\0' || us < 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(us);
}

class stage {
 public:
  explicit stage(session& s)
      : s_(s),
        delay_(slow_stage_delay()),
        order_(3 * s.opts.workers + 2),
        ready_(4),
        pool_({.workers = s.opts.workers, .overflow = goro::overflow_policy::block, .name = "stage"},
              [this](const goro::context& ctx, stage_task task) { process(ctx, std::move(task)); },
              [](goro::result<void>) {}) {}

  // The channel of processed batches, in read order (output reads it).
  goro::chan<line_batch> ready() const { return ready_; }

  // feed() is the feeder fiber: s.lines -> pool, slots -> orderer. When
  // s.lines is closed it shuts the pool down (in-flight tasks get a short
  // drain) and closes the slot channel.
  void feed() {
    for (;;) {
      std::optional<line_batch> b = s_.lines.recv();
      if (!b) break;
      goro::chan<line_batch> slot(1);
      order_.send(stage_slot{b->file, slot});  // the orderer always drains order_
      if (pool_.submit(s_.drain, stage_task{std::move(*b), slot}) != goro::submit_status::accepted) {
        // Shutdown cut it: the orderer finds the slot empty once the pool is down.
      }
    }
    pool_.shutdown(300ms);
    pool_down_.close();
    order_.close();
  }

  // order() is the orderer fiber: waits for each slot in submission order.
  // A slot left empty (its task was cut by shutdown) poisons its file: later
  // batches of that file are dropped too, so its committed offset never
  // jumps over lines that were not printed.
  void order() {
    std::set<followed_file*> poisoned;
    for (;;) {
      std::optional<stage_slot> next = order_.recv();
      if (!next) break;
      std::optional<line_batch> b;
      goro::select(goro::on_recv(next->slot, [&](std::optional<line_batch> v) { b = std::move(v); }),
                   goro::on_recv(pool_down_));
      if (!b) {
        auto late = next->slot.try_recv();  // both were ready: the slot wins
        if (late) b = std::move(late.value);
      }
      if (!b || poisoned.count(next->file.get()) != 0) {
        poisoned.insert(next->file.get());
        add(s_.stats.lost_batches);
        continue;
      }
      ready_.send(std::move(*b));
    }
    ready_.close();
  }

 private:
  // process() is one stage task: the identity transform (an example app
  // would parse, filter or enrich here), plus the slow-consumer test hook.
  void process(const goro::context& ctx, stage_task task) {
    if (delay_.count() > 0) (void)goro::this_fiber::sleep_for(ctx, delay_);
    (void)task.slot.try_send(std::move(task.batch));  // capacity 1, one send: never blocks
  }

  session& s_;
  std::chrono::microseconds delay_;
  goro::chan<stage_slot> order_;
  goro::chan<line_batch> ready_;
  goro::chan<std::monostate> pool_down_{0};
  goro::worker_pool<stage_task, void> pool_;
};

}  // namespace tail
