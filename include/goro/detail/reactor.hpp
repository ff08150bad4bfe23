// SPDX-License-Identifier: MIT
// The I/O reactor (Go's netpoll): one epoll set per runtime, watched by the
// workers themselves, and readying the fibers whose file descriptors became
// ready. Public face: goro/io.hpp.
//
// Design
//   * Lazy: the reactor is a scheduler service (scheduler::service<reactor>),
//     created on the first wait; a runtime that does no I/O has no epoll set
//     and no poller thread. wait_and_stop() stops it and joins the poller
//     thread after the workers have stopped.
//   * Who calls epoll_wait (as in Go; scheduler::poll_blocker() has the
//     whole story): a worker about to go idle polls without blocking
//     (poll_ready), and the last one to go idle blocks there (poll_blocking,
//     broken by an eventfd write from worker::unpark), so an event wakes the
//     worker that will run the fiber, with no thread in between. The poller
//     thread never blocks in epoll_wait: it polls every poll_interval while
//     fds are waited on and no worker blocks there (every worker busy in
//     long fibers, Go's sysmon netpoll), and sleeps otherwise. A thread
//     blocked in epoll_wait is woken by every event; when that thread was a
//     poller beside busy workers, each event cost two thread hops (poller,
//     then a worker): a 1-worker socket ping-pong took 5.8 us instead of 2.9.
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
    try {
      // Level-triggered and never drained by a non-blocking poll: a break
      // written just before a worker blocks still ends that wait.
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = break_token;
      break_fd_ = sched_.open_poll_break_fd();
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, break_fd_, &ev) != 0)
        throw std::system_error(errno, std::system_category(), "goro: epoll_ctl (break fd)");
      poller_ = std::thread([this] { poll_loop(); });
    } catch (...) {
      ::close(epfd_);
      throw;
    }
    sched_.set_ready_poller(this);
  }
  ~reactor() override {
    shutdown();
    ::close(epfd_);
  }
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  // Stops and joins the poller. Fibers still parked here stay parked (run()
  // unwinds them next). Idempotent.
  void shutdown() noexcept override {
    sched_.set_ready_poller(nullptr);
    if (!poller_.joinable()) return;
    sched_.stop_poll_thread();
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
    note_poll();
    std::size_t woken = 0;
    for (int i = 0; i < n; ++i)
      if (events[i].data.u64 != break_token) woken += dispatch(events[i]);  // a break is for the blocked worker
    return woken;
  }

  // The last idle worker's sleep (scheduler::poll_blocker()): blocks until
  // an event, a break (drained here) or deadline_ns, then calls woken(arg)
  // and dispatches. An interrupted wait returns 0: the caller loops.
  std::size_t poll_blocking(std::int64_t deadline_ns, void (*woken)(void*) noexcept, void* arg) noexcept override {
    epoll_event events[64];
    const int n = wait_events(events, 64, deadline_ns);
    woken(arg);
    note_poll();
    std::size_t readied = 0;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == break_token) {
        std::uint64_t count;
        (void)!::read(break_fd_, &count, sizeof count);  // nonblocking; empty is fine
        continue;
      }
      readied += dispatch(events[i]);
    }
    return readied;
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
  static constexpr std::uint64_t break_token = ~std::uint64_t{0};  // the scheduler's poll-break eventfd
  // The poller thread's period while no worker watches the reactor: the
  // longest an fd event waits when every worker is busy in long fibers.
  static constexpr std::chrono::milliseconds poll_interval{10};

  // Records that someone polled (coarse clock): the poller thread polls only
  // when nobody has for poll_interval. Stored only when the coarse clock
  // moved, so the workers' polls rarely write the shared line.
  void note_poll() noexcept {
    const std::int64_t now = coarse_now_ns();
    if (last_poll_ns_.load(std::memory_order_relaxed) != now) last_poll_ns_.store(now, std::memory_order_relaxed);  // relaxed: a hint
  }

  // epoll_wait until deadline_ns (steady clock; no_deadline_ns: none), with
  // nanosecond timeouts (epoll_pwait2, Linux 5.11) so a timer due while
  // every worker is idle fires on time; milliseconds, rounded up, before.
  // Returns the number of events; 0 when interrupted by a signal.
  int wait_events(epoll_event* events, int max, std::int64_t deadline_ns) noexcept {
    std::int64_t rel = -1;
    if (deadline_ns != no_deadline_ns) rel = std::max<std::int64_t>(0, deadline_ns - to_ns(std::chrono::steady_clock::now()));
    static std::atomic<bool> have_pwait2{true};
    int n = -1;
    bool waited = false;
#ifdef SYS_epoll_pwait2
    if (have_pwait2.load(std::memory_order_relaxed)) {  // relaxed: a capability hint
      timespec ts{static_cast<time_t>(rel / 1'000'000'000), static_cast<long>(rel % 1'000'000'000)};
      n = static_cast<int>(::syscall(SYS_epoll_pwait2, epfd_, events, max, rel < 0 ? nullptr : &ts, nullptr, 0));
      waited = n >= 0 || errno != ENOSYS;
      if (!waited) have_pwait2.store(false, std::memory_order_relaxed);
    }
#endif
    if (!waited) {
      const std::int64_t ms = rel < 0 ? -1 : std::min<std::int64_t>((rel + 999'999) / 1'000'000, INT_MAX);
      n = ::epoll_wait(epfd_, events, max, static_cast<int>(ms));
    }
    if (n < 0 && errno != EINTR) GORO_FATAL("goro: epoll_wait failed in an idle worker");  // the worker would spin
    return std::max(n, 0);
  }

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

  // The poller thread (see the file comment): polls every poll_interval
  // while fds are waited on and no worker blocks in the reactor; sleeps
  // until that changes otherwise. It goes to that sleep only after a whole
  // interval with nothing to watch, so fd waits that open and close all the
  // time (each opening wakes a sleeping poller) keep it napping instead.
  void poll_loop() {
    bool quiet_before = false;
    while (!sched_.poll_thread_stopping()) {
      const bool quiet = sched_.external_waits() == 0 || sched_.poll_blocker() != nullptr;
      sched_.poll_thread_sleep(quiet && quiet_before, poll_interval);
      quiet_before = quiet;
      if (quiet || sched_.poll_thread_stopping()) continue;
      const std::int64_t since = coarse_now_ns() - last_poll_ns_.load(std::memory_order_relaxed);  // relaxed: a hint
      if (since >= std::chrono::nanoseconds(poll_interval).count() && sched_.poll_blocker() == nullptr) poll_ready();
    }
  }

  scheduler& sched_;
  int epfd_ = -1;
  int break_fd_ = -1;                          // the scheduler's: see scheduler::open_poll_break_fd()
  std::atomic<std::int64_t> last_poll_ns_{0};  // see note_poll()
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
