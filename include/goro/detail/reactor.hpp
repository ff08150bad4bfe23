// SPDX-License-Identifier: MIT
// The I/O reactor (Go's netpoll, as a thread): one epoll set per runtime and
// one poller thread that blocks in epoll_wait and readies the fibers whose
// file descriptors became ready. Public face: goro/io.hpp.
//
// Design
//   * Lazy: the reactor is a scheduler service (scheduler::service<reactor>),
//     created on the first wait; a runtime that does no I/O has no epoll set
//     and no poller thread. wait_and_stop() stops it (an eventfd write) and
//     joins the poller after the workers have stopped.
//   * Registration is level-triggered with EPOLLONESHOT: the interest of an
//     fd is (readers waiting ? IN) | (writers waiting ? OUT), re-armed under
//     the fd's lock whenever a waiter queues and after every event that left
//     waiters behind. An event disarms the fd, so the poller never spins on a
//     ready fd nobody waits for, and level triggering means an event cannot be
//     lost between a waiter's check and its arm: the re-arm reports the fd at
//     once if it is still ready.
//   * A fiber waits with block_on_until(): the fd event, the context's done
//     channel and io::close() are the cases of one select, so exactly one
//     wakes it, and afterwards its waiter is on no queue.
//   * Events carry (generation << 32 | fd); close() bumps the generation, so
//     an event fetched for a closed fd cannot wake the waiters of a new file
//     that reuses the number.
//
// Invariants:
//   * An fd_entry, once created, lives as long as the reactor (fd numbers are
//     dense and reused, as in Go's pollcache): a waiter or the poller may hold
//     an entry pointer without the table lock.
//   * fd_entry::readers/writers/generation/registered are guarded by its lock;
//     epoll_ctl on an fd is called only under that lock, so the kernel sees
//     the interest changes in the order the queues changed.
//   * A fiber parked here is counted in scheduler::external_waits (the
//     deadlock detector must not call it asleep forever: a peer process, a
//     timer in the kernel or io::close from a plain thread may wake it).
//
// Lock order: reactor::table_mu_, then fd_entry::lock, then a context's done
// lock (block_on_until). The poller takes table_mu_ only to find an entry.
#pragma once

#include "goro/context.hpp"
#include "goro/detail/scheduler.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/waiter.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

namespace goro::detail {

enum class io_direction { read, write };

// The wait state of one fd number.
struct fd_entry {
  explicit fd_entry(int fd_) : fd(fd_) {}
  const int fd;
  spinlock lock;
  std::uint32_t generation GORO_GUARDED_BY(lock) = 0;  // bumped by close()
  bool registered GORO_GUARDED_BY(lock) = false;       // in the epoll set (as far as we know)
  wait_queue readers GORO_GUARDED_BY(lock);
  wait_queue writers GORO_GUARDED_BY(lock);
};

class reactor final : public runtime_service, public ready_poller {
 public:
  explicit reactor(scheduler& sched) : sched_(sched) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "goro: epoll_create1");
    stopfd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stopfd_ < 0) {
      const int e = errno;
      ::close(epfd_);
      throw std::system_error(e, std::system_category(), "goro: eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = stop_token;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, stopfd_, &ev);
    poller_ = std::thread([this] { poll_loop(); });
    sched_.set_ready_poller(this);
  }
  ~reactor() override {
    shutdown();
    ::close(stopfd_);
    ::close(epfd_);
  }
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  // Stops and joins the poller. Fibers still parked here stay parked (run()
  // unwinds them next). Idempotent.
  void shutdown() noexcept override {
    sched_.set_ready_poller(nullptr);
    if (!poller_.joinable()) return;
    const std::uint64_t one = 1;
    (void)!::write(stopfd_, &one, sizeof one);
    poller_.join();
  }

  // Parks the calling fiber until fd is ready for dir, done closes (nullptr:
  // never), or close(fd). Returns 0, ECANCELED (done closed) or an errno.
  int wait(int fd, io_direction dir, chan_core* done) GORO_NO_TSA {
    fd_entry& e = entry(fd);
    waiter w;
    w.fib = current_fiber();
    e.lock.lock();
    wait_queue& queue = dir == io_direction::read ? e.readers : e.writers;
    queue.push_back(&w);
    if (const int err = arm(e); err != 0) {
      queue.remove(&w);
      e.lock.unlock();
      // EPERM: a regular file or directory, which epoll refuses and which
      // is always ready (poll(2) says so too).
      return err == EPERM ? 0 : err;
    }
    wait_result r;
    {
      external_wait_scope open(sched_);  // also tells idle workers to poll (find_runnable)
      r = block_on_until(e.lock, queue, w, wait_reason::io_wait, steady_time::max(), done);
    }
    if (r == wait_result::canceled) return ECANCELED;
    return static_cast<int>(w.outcome);
  }

  // A worker going idle: dispatch the fd events already pending, without
  // blocking. Events are one-shot, so each goes to exactly one epoll_wait
  // caller, this or the poller thread; dispatch() is safe on either. A
  // waiter it wakes is readied from this worker, onto this worker's queue.
  std::size_t poll_ready() noexcept override {
    epoll_event events[64];
    int n;
    do {
      n = ::epoll_wait(epfd_, events, 64, 0);
    } while (n < 0 && errno == EINTR);
    std::size_t woken = 0;
    for (int i = 0; i < n; ++i)
      if (events[i].data.u64 != stop_token) woken += dispatch(events[i]);
    return woken;
  }

  // Wakes every waiter of fd with EBADF and takes fd out of the epoll set.
  // Does not close fd.
  void forget(int fd) GORO_NO_TSA {
    fd_entry* e = find(fd);
    if (e == nullptr) return;
    wait_queue woken;
    {
      spin_guard lock(e->lock);
      ++e->generation;
      take_all(e->readers, woken, EBADF);
      take_all(e->writers, woken, EBADF);
      if (e->registered) {
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);  // fails harmlessly if fd was closed behind our back
        e->registered = false;
      }
    }
    while (waiter* w = woken.pop_front()) w->wake();
  }

 private:
  static constexpr std::uint64_t stop_token = ~std::uint64_t{0};

  fd_entry& entry(int fd) {
    std::lock_guard lock(table_mu_);
    auto& slot = table_[fd];
    if (!slot) slot = std::make_unique<fd_entry>(fd);
    return *slot;
  }
  fd_entry* find(int fd) {
    std::lock_guard lock(table_mu_);
    auto it = table_.find(fd);
    return it != table_.end() ? it->second.get() : nullptr;
  }

  // (Re-)arms e's one-shot registration for the directions that have
  // waiters. Returns 0 or the errno of epoll_ctl.
  int arm(fd_entry& e) GORO_REQUIRES(e.lock) {
    std::uint32_t interest = 0;
    if (!e.readers.empty()) interest |= EPOLLIN | EPOLLRDHUP;
    if (!e.writers.empty()) interest |= EPOLLOUT;
    if (interest == 0) return 0;  // stays disarmed (or fires once for nobody)
    epoll_event ev{};
    ev.events = interest | EPOLLONESHOT;
    ev.data.u64 = (std::uint64_t{e.generation} << 32) | static_cast<std::uint32_t>(e.fd);
    // `registered` can be stale (the user closed the fd with ::close, which
    // drops it from the set, and the number came back): fall over to the
    // other operation.
    int op = e.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(epfd_, op, e.fd, &ev) != 0) {
      const int first = errno;
      if (!((op == EPOLL_CTL_MOD && first == ENOENT) || (op == EPOLL_CTL_ADD && first == EEXIST))) return first;
      op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
      if (::epoll_ctl(epfd_, op, e.fd, &ev) != 0) return errno;
    }
    e.registered = true;
    return 0;
  }

  // Moves every waiter of `from` that can still be woken to `to`, with outcome.
  static void take_all(wait_queue& from, wait_queue& to, int outcome) {
    while (waiter* w = from.pop_claimed()) {
      w->outcome = static_cast<std::uint32_t>(outcome);
      to.push_back(w);
    }
  }

  // Wakes the waiters an event is for; returns how many.
  std::size_t dispatch(const epoll_event& ev) GORO_NO_TSA {
    const int fd = static_cast<int>(ev.data.u64 & 0xffffffffu);
    const auto generation = static_cast<std::uint32_t>(ev.data.u64 >> 32);
    fd_entry* e = find(fd);
    if (e == nullptr) return 0;
    wait_queue woken;
    {
      spin_guard lock(e->lock);
      if (generation != e->generation) return 0;  // for a file closed since
      // Errors and hang-ups wake both sides: their read/write reports them.
      if ((ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) take_all(e->readers, woken, 0);
      if ((ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) take_all(e->writers, woken, 0);
      // The event disarmed the fd; waiters of the other direction (or ones
      // that queued meanwhile for this one) need it armed again.
      if (const int err = arm(*e); err != 0) {
        // The fd died under us: wake the rest with the error.
        take_all(e->readers, woken, err);
        take_all(e->writers, woken, err);
      }
    }
    std::size_t n = 0;
    for (; waiter* w = woken.pop_front(); ++n) w->wake();
    return n;
  }

  void poll_loop() {
    epoll_event events[128];
    for (;;) {
      const int n = ::epoll_wait(epfd_, events, 128, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        GORO_FATAL("goro: epoll_wait failed in the I/O poller");
      }
      bool stop = false;
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == stop_token)
          stop = true;
        else
          dispatch(events[i]);
      }
      if (stop) return;
    }
  }

  scheduler& sched_;
  int epfd_ = -1;
  int stopfd_ = -1;
  std::mutex table_mu_;
  std::unordered_map<int, std::unique_ptr<fd_entry>> table_;  // guarded by table_mu_; never shrinks
  std::thread poller_;
};

// The reactor of s, created on first use; nullptr once s's services are shut
// down. Once it exists it is s's registered ready_poller (nothing else
// registers), so a wait finds it with one atomic load instead of taking the
// services lock, which every fd wait on every worker would otherwise share.
inline reactor* reactor_of(scheduler& s) {
  if (ready_poller* p = s.registered_ready_poller()) return static_cast<reactor*>(p);
  return s.service<reactor>();
}

// ---------------------------------------------------------------------------
// Plain threads (not fibers) wait in ::poll on the fd and a private eventfd,
// which a context cancellation (through its stop_token) or io::close() writes
// to. Plain waiters are listed process-wide by fd so that close() finds them.
struct plain_io_waiter {
  int fd;
  int wakefd;
  bool closed = false;  // guarded by plain_io_table::mu
};
struct plain_io_table {
  std::mutex mu;
  std::unordered_multimap<int, plain_io_waiter*> waiters;  // guarded by mu
};
inline plain_io_table& plain_io_waiters() {
  static plain_io_table table;
  return table;
}

inline void plain_io_forget(int fd) {
  auto& table = plain_io_waiters();
  std::lock_guard lock(table.mu);
  auto [first, last] = table.waiters.equal_range(fd);
  for (auto it = first; it != last; ++it) {
    it->second->closed = true;
    const std::uint64_t one = 1;
    (void)!::write(it->second->wakefd, &one, sizeof one);
  }
}

// Returns {} when ready, ctx.err() (or deadline_exceeded once the deadline
// passed), bad_file_descriptor when fd is invalid or closed by io::close, or
// another errno.
inline std::error_code plain_io_wait(int fd, io_direction dir, const context& ctx) {
  if (auto err = ctx.err()) return err;
  plain_io_waiter self{fd, ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  if (self.wakefd < 0) return {errno, std::system_category()};
  if (self.wakefd == fd) {  // fd was closed before we started: its number came back to us
    ::close(self.wakefd);
    return std::make_error_code(std::errc::bad_file_descriptor);
  }
  auto& table = plain_io_waiters();
  std::unordered_multimap<int, plain_io_waiter*>::iterator listed;
  {
    std::lock_guard lock(table.mu);
    listed = table.waiters.emplace(fd, &self);
  }
  std::error_code result;
  {
    // Runs at once if ctx is already cancelled; its destructor waits for a
    // concurrent run, so wakefd outlives every write to it.
    std::optional<std::stop_callback<std::function<void()>>> on_cancel;
    if (ctx.done_core() != nullptr)
      on_cancel.emplace(ctx.stop_token(), std::function<void()>([wakefd = self.wakefd] {
                          const std::uint64_t one = 1;
                          (void)!::write(wakefd, &one, sizeof one);
                        }));
    const auto deadline = ctx.deadline();
    for (;;) {
      int timeout_ms = -1;
      if (deadline) {
        const auto left = *deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero()) {
          result = ctx.err() ? ctx.err() : make_error_code(context_errc::deadline_exceeded);
          break;
        }
        // Round up: waking a hair early would only loop.
        timeout_ms = static_cast<int>(
            std::min<std::int64_t>(std::chrono::ceil<std::chrono::milliseconds>(left).count(), 1 << 30));
      }
      pollfd fds[2] = {{fd, static_cast<short>(dir == io_direction::read ? POLLIN : POLLOUT), 0},
                       {self.wakefd, POLLIN, 0}};
      const int n = ::poll(fds, 2, timeout_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        result = {errno, std::system_category()};
        break;
      }
      if (fds[1].revents != 0) break;  // cancelled or closed: told apart below
      if ((fds[0].revents & POLLNVAL) != 0) {
        result = std::make_error_code(std::errc::bad_file_descriptor);
        break;
      }
      if (fds[0].revents != 0) break;  // ready (or an error/hang-up the I/O call reports)
    }
  }
  bool closed;
  {
    std::lock_guard lock(table.mu);
    closed = self.closed;
    table.waiters.erase(listed);
  }
  ::close(self.wakefd);
  if (closed) return std::make_error_code(std::errc::bad_file_descriptor);
  if (!result) result = ctx.err();  // the wake-up was a cancellation
  return result;
}

}  // namespace goro::detail
