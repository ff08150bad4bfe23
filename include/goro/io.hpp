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
// Design and guarantees: docs/io.md; the reactor: detail/reactor.hpp.
#pragma once

#include "goro/context.hpp"
#include "goro/detail/reactor.hpp"
#include "goro/detail/scheduler.hpp"

#include <unistd.h>

#include <cerrno>
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

}  // namespace goro::io
