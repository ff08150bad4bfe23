// SPDX-License-Identifier: MIT
// Waiting for file descriptors without blocking a worker (Go's netpoller).
//
//   int fd = ...;                                   // O_NONBLOCK: read/write return EAGAIN
//   for (;;) {
//     ssize_t n = ::read(fd, buf, sizeof buf);
//     if (n >= 0 || errno != EAGAIN) break;
//     if (auto err = goro::io::wait_readable(fd, ctx)) return err;   // parks this fiber only
//   }
//   goro::io::close(fd);                            // wakes every waiter of fd, then closes it
//
//   std::error_code ec;                             // a regular file: the page cache on this
//   std::size_t n = goro::io::read_at(file_fd, buf, sizeof buf, offset, ec);  // worker, the disk
//                                                   // through blocking(); 0 at EOF
//
// Design and guarantees: docs/io.md; the reactor: detail/reactor.hpp.
#pragma once

#include "goro/blocking.hpp"
#include "goro/context.hpp"
#include "goro/detail/reactor.hpp"
#include "goro/detail/scheduler.hpp"

#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <mutex>
#include <system_error>

namespace goro::io {

namespace detail_io {
inline std::error_code wait(int fd, goro::detail::io_direction dir, const goro::context& ctx) {
  using namespace goro::detail;
  if (fd < 0) return std::make_error_code(std::errc::bad_file_descriptor);
  fiber* f = current_fiber();
  reactor* r = f != nullptr ? reactor_of(*f->sched) : nullptr;
  if (r == nullptr) return plain_io_wait(fd, dir, ctx);
  if (auto err = ctx.err()) return err;
  const int outcome = r->wait(fd, dir, ctx.done_core());
  if (outcome == ECANCELED) return ctx.err();
  if (outcome == EBADF) return std::make_error_code(std::errc::bad_file_descriptor);
  return outcome == 0 ? std::error_code{} : std::error_code(outcome, std::system_category());
}
}  // namespace detail_io

// wait_readable() parks the calling fiber (not its worker) until fd is
// readable: data, end of file, a hang-up or an error (the next read reports
// which). Use it on O_NONBLOCK descriptors after read() said EAGAIN; a
// readiness report is a hint, as with poll(2): another reader may drain the
// fd first, so loop on EAGAIN.
//
// Returns: {} when ready; ctx.err() when ctx ends first (canceled or
//   deadline_exceeded); std::errc::bad_file_descriptor when fd is closed
//   through goro::io::close() while waiting, or is not a valid descriptor;
//   another errno (as a system_category error_code) when epoll refuses fd.
//   Regular files and directories are always ready (as poll(2) reports them).
// Blocks: the calling fiber only; a plain thread (not a fiber) waits in
//   ::poll, with the same cancellation and close() guarantees.
// Concurrency: any number of fibers may wait on one fd, for reading and for
//   writing at once; a readiness event wakes every waiter of its direction.
// Deadlock detection: a fiber waiting here is never reported as deadlocked
//   (a peer may write at any time); it still counts as a live fiber.
inline std::error_code wait_readable(int fd, const goro::context& ctx = goro::background()) {
  return detail_io::wait(fd, goro::detail::io_direction::read, ctx);
}

// wait_writable() is wait_readable() for writing: it returns once fd accepts
// data (or reports an error or hang-up to the next write).
inline std::error_code wait_writable(int fd, const goro::context& ctx = goro::background()) {
  return detail_io::wait(fd, goro::detail::io_direction::write, ctx);
}

// close() wakes every fiber and plain thread waiting on fd in any runtime
// (their wait returns std::errc::bad_file_descriptor), takes fd out of the
// epoll sets, then ::close(fd) and returns its result (0, or -1 with errno).
// Closing an fd with plain ::close() while someone waits on it leaves the
// waiter parked until its context ends (the kernel tells nobody): use this.
//
// Guarantee: a wait on fd that started before close() was called returns,
// with bad_file_descriptor unless it was already ready or cancelled. (A wait
// that starts after close() sees an invalid or reused fd number: a bug in
// the caller, as with any use after close.)
inline int close(int fd) {
  using namespace goro::detail;
  if (fd >= 0) {
    {
      std::lock_guard lock(process().mu);
      for (scheduler* s : process().schedulers)
        if (reactor* r = s->service<reactor>(false)) r->forget(fd);
    }
    plain_io_forget(fd);
  }
  return ::close(fd);
}

// read_cached() reads up to size bytes of fd at offset, like pread(2), but
// only what the page cache already holds: preadv2(RWF_NOWAIT), which never
// waits for a device, so it is safe on a worker (a few microseconds, no
// thread hop). For regular files and block devices.
//
// Returns: the bytes read: 0 at end of file, fewer than size when only part
//   of the range is cached. On failure 0, with ec set (else ec is cleared):
//   std::errc::resource_unavailable_try_again (EAGAIN) when the first byte
//   is not cached, or the file system cannot say without blocking (a kernel
//   or file system without RWF_NOWAIT: its ENOSYS or EOPNOTSUPP is reported
//   as EAGAIN); another errno (EBADF, EINVAL, ESPIPE, ...) as pread reports
//   it. An offset past off_t's range is EINVAL.
// Why an error_code and not errno: the I/O calls here may move the fiber to
//   another thread, and errno belongs to the thread (a compiler may keep the
//   old thread's errno address across the call). This one does not switch,
//   but takes the same form as read_at.
// Blocks: never. Any thread.
inline std::size_t read_cached(int fd, void* buf, std::size_t size, std::uint64_t offset,
                               std::error_code& ec) noexcept {
  ec.clear();
  // preadv2 takes offset -1 as "the file position" (and moves it): an offset
  // past off_t is pread's EINVAL here, never a read at the position.
  if (offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return 0;
  }
  iovec range{buf, size};
  for (;;) {
    ssize_t n = ::preadv2(fd, &range, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    if (n >= 0) return static_cast<std::size_t>(n);
    const int error = errno;
    if (error == EINTR) continue;
    // No RWF_NOWAIT here (kernel < 4.14, or a file system such as procfs
    // or tmpfs that does not offer it): only a blocking read can tell.
    ec = std::error_code(error == EOPNOTSUPP || error == ENOSYS ? EAGAIN : error, std::system_category());
    return 0;
  }
}

// read_at() is pread(2) for fibers: it reads up to size bytes of fd at
// offset without blocking a worker. What the page cache holds is read on the
// calling worker (read_cached); only a read that must wait for the device
// goes through goro::blocking, whose pool thread does the pread (Go does
// every file read on its own thread, handing the P off). So a file that is
// being written (a log being followed) or was read recently costs no thread
// hop, and a cold one costs one.
//
// Returns: the bytes read: 0 at end of file, possibly fewer than size (loop
//   as with pread). On failure 0 with ec set to pread's errno (system
//   category); ec is cleared otherwise. EINTR is retried.
// Blocks: the calling fiber only (a plain thread: itself, in pread). A device
//   read cannot be cancelled (neither can Go's); it ends when the device
//   answers. buf must stay valid until read_at returns, which it does.
// Metrics: runtime_metrics().file_reads_cached / file_reads_offloaded.
inline std::size_t read_at(int fd, void* buf, std::size_t size, std::uint64_t offset, std::error_code& ec) {
  using namespace goro::detail;
  // pread's whole answer as values: errno must be read on the thread that
  // made the call, before any switch.
  auto pread_once = [fd, buf, size, offset]() noexcept -> std::pair<std::size_t, int> {
    if (offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) return {0, EINVAL};
    for (;;) {
      ssize_t got = ::pread(fd, buf, size, static_cast<off_t>(offset));
      if (got >= 0) return {static_cast<std::size_t>(got), 0};
      if (errno != EINTR) return {0, errno};
    }
  };
  std::pair<std::size_t, int> outcome;
  worker* w = current_fiber() != nullptr ? current_worker() : nullptr;
  if (w == nullptr) {  // a plain thread may block
    outcome = pread_once();
  } else {
    std::size_t n = read_cached(fd, buf, size, offset, ec);
    if (ec != std::errc::resource_unavailable_try_again) {
      worker_counters::bump(w->counters().file_reads_cached);  // still on w: no switch since current_worker()
      return n;
    }
    worker_counters::bump(w->counters().file_reads_offloaded);
    outcome = goro::blocking(pread_once);
  }
  ec = outcome.second != 0 ? std::error_code(outcome.second, std::system_category()) : std::error_code{};
  return outcome.first;
}

}  // namespace goro::io
