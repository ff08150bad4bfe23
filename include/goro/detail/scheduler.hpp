// SPDX-License-Identifier: MIT
// The M:N work-stealing scheduler: N worker threads run fibers.
//
// Design (learned from Go's proc.go; internals walkthrough in docs/scheduler.md)
//
// Each worker owns a bounded local run_queue plus a runnext slot. A fiber made
// runnable by a running fiber goes to runnext (LIFO hand-off: ping-pong and
// fork/join stay on one core, cache-warm); the fiber it displaces goes to the
// queue tail. Queue overflow and wake-ups from threads that are not workers go
// to the global MPMC queue.
//
// find_runnable() is the worker loop's one verb, in numbered steps:
//   (1) due timers of this worker; (2) every 61st tick the global queue first
//   (fairness); (3) runnext, then the local queue; (4) the global queue;
//   (5) as a "spinning" worker: steal half of a random victim's queue and run
//   the victims' due timers; (6) park: stop spinning, re-check every queue,
//   publish idleness, re-check again, sleep on a futex until the nearest
//   timer deadline of any worker or a wake-up.
//
// Worker parking/unparking (Go's "spinning" protocol). We must neither burn
// CPU when idle nor leave a runnable fiber behind while a worker sleeps:
//   * Submitter: push the fiber, then (seq_cst fence) if there is an idle
//     worker and no spinning one, claim spinning_ 0->1 and wake one idle
//     worker as a spinner (wake_one_worker).
//   * A spinning worker that finds work stops spinning; if it was the last
//     spinner it wakes another (there may be more work).
//   * A spinner that finds nothing decrements spinning_ (seq_cst) and then
//     re-checks all queues; a worker about to sleep publishes itself in the
//     idle list (seq_cst) and then re-checks all queues.
//   Either the submitter sees the idle/non-spinning worker and wakes it, or
//   the worker's re-check sees the fiber. Rejected: waking a worker on every
//   ready() (a futex syscall per channel message, which is what makes Go's
//   cross-thread ping-pong cost ~450 ns), and timed polling (burns CPU idle).
//
// Trade-off we chose: a pure hand-off (ready() into an empty runnext with an
// empty local queue) wakes nobody. The readied fiber runs when the readier
// blocks or yields, which is nearly always at once; a readier that keeps
// computing delays it (cooperative scheduling: never spin-wait on another
// fiber). Anything that lands in a queue does wake an idle worker.
//
// Parking a fiber (Go's gopark): the fiber records an after_switch action
// (typically "release the primitive's lock"), switches to its worker loop, and
// the worker runs the action once the fiber's stack is no longer in use. A
// waker must take that lock to find the waiter, so it can never resume a
// fiber that is still running on its stack.
//
// Locks and ownership:
//   * idle_mu_ guards idle_ and worker::in_idle_list_.
//   * registry_shard::mu orders the walkers of its table and its growth.
//   * Per-worker fields marked "owner only" are touched only on that worker's
//     thread (the worker loop or a fiber it runs).
//   * Never hold a thread_local address across a switch: current_worker() is
//     re-read through a laundered accessor after every resume.
#pragma once

#include "goro/config.hpp"
#include "goro/detail/assert.hpp"
#include "goro/detail/chan_core.hpp"
#include "goro/detail/fiber.hpp"
#include "goro/detail/futex.hpp"
#include "goro/detail/global_queue.hpp"
#include "goro/detail/run_queue.hpp"
#include "goro/detail/spinlock.hpp"
#include "goro/detail/stack_pool.hpp"
#include "goro/detail/timer_heap.hpp"
#include "goro/detail/waiter.hpp"
#include "goro/errors.hpp"
#include "goro/fiber_info.hpp"
#include "goro/run_options.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <variant>
#include "goro/source_location.hpp"
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace goro::detail {

class worker;
class scheduler;

// ---------------------------------------------------------------------------
// The current worker. The TLS slot is read through a noinline accessor whose
// result is laundered by an asm barrier: compilers otherwise keep the TLS
// address from before a switch, and a fiber that migrated would read the old
// thread's slot (FEASIBILITY section 6).
inline thread_local worker* tls_current_worker = nullptr;

[[gnu::noinline]] inline worker*& current_worker_slot() noexcept {
  worker** p = &tls_current_worker;
  asm volatile("" : "+r"(p));
  return *p;
}
inline worker* current_worker() noexcept { return current_worker_slot(); }

// ---------------------------------------------------------------------------
// Live-fiber registry (Go's allgs), sharded per worker. A shard is a table of
// slots, each free (0) or holding one live fiber, in chunks that never move.
// The worker that spawns a fiber stores it into a free slot of its own shard
// (no lock), and whichever thread runs the fiber's exit clears that slot
// (one compare-exchange, no lock). Why not a locked list: with spawns on one
// core and exits on the other, the shard lock's line and the neighbours' link
// lines crossed cores several times per fiber; spawn+join on 2 workers took
// 215 ns per fiber against 134 with no registry at all (bench/RESULTS.md,
// session 9). A spawner fills the slots in order and the exits clear them in
// about the same order, so a table line (8 slots) crosses twice per 8 fibers.
//
// Walkers (list_fibers, dumps, the deadlock report, shutdown) hold the shard's
// mu, which orders them against one another and against the table's growth,
// and pin a slot (its low bit) while they read the fiber in it: an exit
// waits for the unpin, so no fiber is freed under a walker's reads.
// live_fibers() does not walk: it is spawns minus exits, from counters.
//
// A worker's shard also holds its cache of free fiber objects (Go's per-P
// gFree): spawn takes from the spawning worker's, exit gives to the exiting
// worker's, so neither takes a lock for the object itself.
//
// Invariants:
//   * Only the owner (the worker; for the foreign shard, a thread holding mu)
//     stores a fiber into a slot, and only into a free one; only the fiber's
//     exit frees it; walkers only set and clear the pin of an occupied slot.
//   * chunks_ grows only under mu, by the owner; the owner reads it without
//     mu (it is the only writer), walkers under mu. cursor_ is the owner's.
struct registry_shard {
  using slot = std::atomic<std::uintptr_t>;  // a fiber*, | pinned while a walker reads it; 0: free
  static constexpr std::uintptr_t pinned = 1;  // fibers are 16-aligned
  static constexpr std::size_t chunk_slots = 1024;  // 8 KiB
  static constexpr int probes = 16;  // slots tried from the cursor before the slow path

  spinlock mu;
  fiber_cache fibers;  // owner only: the worker whose shard this is (unused in the foreign shard)

  // Owner: registers f. live is the runtime's live-fiber count (an upper
  // bound is fine), called only when the slots near the cursor are taken:
  // the table grows while it has fewer than twice that many slots, else a
  // free slot is searched for. So a shard holds at most 2 x live + 2,048
  // slots (8 bytes each), and W workers' shards (W+1) times that if all are
  // dense at once. Measured: 1M parked fibers on 2 workers, 1.0M slots; a
  // million short spawns after that, 1.53M slots (12 MiB beside the fibers'
  // 4.3 GiB): each lap of the cursor through the dense block adds a chunk
  // until the 2 x live bound.
  template <class LiveCount>
  void add(fiber* f, LiveCount&& live) {
    const std::size_t capacity = chunks_.size() * chunk_slots;
    for (int i = 0; i < probes && capacity > 0; ++i) {
      slot& s = next_slot(capacity);
      if (s.load(std::memory_order_relaxed) == 0) return occupy(s, f);  // relaxed: only we fill a free slot
    }
    add_slow(f, live());
  }

  // The exiting fiber's thread: frees f's slot, waiting out a walker that
  // has it pinned (a walker reads one fiber's fields, never blocking; but a
  // walker on a plain thread may be preempted, hence the yield).
  static void remove(fiber* f) noexcept {
    slot& s = *f->reg_slot;
    const auto mine = reinterpret_cast<std::uintptr_t>(f);
    unsigned spins = 0;
    for (std::uintptr_t expected = mine;
         !s.compare_exchange_weak(expected, 0, std::memory_order_acquire,  // acquire: pairs with the walker's unpin,
                                  std::memory_order_relaxed);              // so its reads of f precede f's free
         expected = mine) {
      if (++spins < 4096)
        cpu_relax();
      else
        std::this_thread::yield();
    }
  }

  // Any thread: visit(f) for every fiber registered here, each pinned while
  // visited. visit must not block or switch fibers.
  template <class Visit>
  void for_each(Visit&& visit) GORO_EXCLUDES(mu) {
    spin_guard lock(mu);
    for (auto& chunk : chunks_) {
      for (std::size_t i = 0; i < chunk_slots; ++i) {
        slot& s = chunk[i];
        std::uintptr_t v = s.load(std::memory_order_acquire);  // acquire: pairs with occupy(): f is built
        while (v != 0) {
          if (s.compare_exchange_weak(v, v | pinned, std::memory_order_acquire, std::memory_order_acquire)) {
            visit(reinterpret_cast<fiber*>(v));
            s.store(v, std::memory_order_release);  // release: our reads happen before the exit's free
            break;
          }
        }
      }
    }
  }

  std::size_t slots() GORO_EXCLUDES(mu) {
    spin_guard lock(mu);
    return chunks_.size() * chunk_slots;
  }

 private:
  slot& next_slot(std::size_t capacity) noexcept {
    slot& s = chunks_[cursor_ / chunk_slots][cursor_ % chunk_slots];
    if (++cursor_ == capacity) cursor_ = 0;
    return s;
  }
  static void occupy(slot& s, fiber* f) noexcept {
    f->reg_slot = &s;
    s.store(reinterpret_cast<std::uintptr_t>(f), std::memory_order_release);  // release: walkers see f built
  }
  void add_slow(fiber* f, std::size_t live) {
    const std::size_t capacity = chunks_.size() * chunk_slots;
    if (capacity >= 2 * live + chunk_slots) {
      // At least half the slots are free: a dense stretch, search past it.
      for (std::size_t i = 0; i < capacity; ++i) {
        slot& s = next_slot(capacity);
        if (s.load(std::memory_order_relaxed) == 0) return occupy(s, f);  // relaxed: as in add()
      }
    }
    auto chunk = std::make_unique<slot[]>(chunk_slots);  // value-initialised: all free
    slot& first = chunk[0];
    {
      spin_guard lock(mu);
      chunks_.push_back(std::move(chunk));
    }
    cursor_ = capacity + 1;
    occupy(first, f);
  }

  std::vector<std::unique_ptr<slot[]>> chunks_;
  std::size_t cursor_ = 0;
};

fiber_info snapshot(const fiber* f);  // below

// ---------------------------------------------------------------------------
// Process-wide state: the running schedulers (for live_fibers()/dump_fibers()
// from anywhere), fiber ids, and what run() had to unwind at shutdown.
struct process_state {
  std::mutex mu;
  std::vector<scheduler*> schedulers;  // guarded by mu
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> unwound_at_shutdown{0};
  std::string last_unwound_report;  // guarded by mu
  std::once_flag signal_handlers_once;
  std::atomic<int> lock_diagnostics_runtimes{0};  // running runtimes with lock_wait_threshold set
  // Poll-break eventfds of runtimes that have ended (scheduler::
  // open_poll_break_fd): never closed, so a late unpark() that writes to
  // one can only wake a later runtime's worker spuriously, never write
  // into a file that reused the number.
  std::mutex spare_mu;               // a leaf lock: nothing is taken under it
  std::vector<int> spare_break_fds;  // guarded by spare_mu
  struct sigaction previous_segv {};
  struct sigaction previous_bus {};
};
inline process_state& process() noexcept {
  static process_state state;
  return state;
}

// ---------------------------------------------------------------------------
struct worker_counters {
  std::atomic<std::uint64_t> switches{0};
  std::atomic<std::uint64_t> steals{0};
  std::atomic<std::uint64_t> parks{0};
  std::atomic<std::uint64_t> wakes{0};
  std::atomic<std::uint64_t> spawned{0};
  std::atomic<std::uint64_t> exited{0};  // fibers of this runtime that exited on this worker
  std::atomic<std::uint64_t> io_polled{0};  // fibers readied by this worker's own poll of the reactor
  std::atomic<std::uint64_t> io_blocking_polls{0};  // times it went idle blocked in the reactor, not on its futex
  std::atomic<std::uint64_t> file_reads_cached{0};     // io::read_at calls served from the page cache here
  std::atomic<std::uint64_t> file_reads_offloaded{0};  // io::read_at calls that went to the blocking() pool
  // Owner-only increments: load+store, no RMW on the hot path.
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);  // relaxed: statistic, single writer
  }
};

class worker {
 public:
  worker(scheduler& sched, unsigned index, std::size_t stack_size)
      : sched_(sched), index_(index), stacks_(stack_size), rng_(0x9e3779b97f4a7c15ULL * (index + 1)) {}

  scheduler& sched() const noexcept { return sched_; }
  unsigned index() const noexcept { return index_; }
  fiber* running() const noexcept { return running_; }
  stack_cache& stacks() noexcept { return stacks_; }
  timer_heap& timers() noexcept { return timers_; }
  run_queue& queue() noexcept { return queue_; }
  registry_shard& registry() noexcept { return registry_; }
  worker_counters& counters() noexcept { return counters_; }
  // Owner: 16 or more fibers queued here (a burst of wake-ups). What is
  // queued that deep is cold through and through, and a fiber that joins it
  // runs only after the rest. Not run_queue::size(): that reads runnext,
  // whose line is the thieves' too.
  bool queue_is_long() const noexcept { return queue_.peek(15) != nullptr; }

  void loop();                    // the worker thread's body
  void push_local(fiber* f);      // owner only: queue tail, overflow to global
  fiber* take_from_global();      // owner only: a batch from the global queue; one to run, the rest queued
  std::uint64_t next_fiber_id();  // owner only
  void unpark() noexcept;  // wakes it from park_until(): its futex, or the reactor's blocking poll
  std::int64_t parked_until_ns() const noexcept { return parked_until_ns_.load(std::memory_order_acquire); }

 private:
  friend class scheduler;

  fiber* find_runnable();
  void execute(fiber* f);
  void give_first_stack(fiber* f) noexcept;
  fiber* steal_work(std::chrono::steady_clock::time_point now);
  void start_spinning() noexcept;
  void stop_spinning(bool found_work) noexcept;
  void park_until(std::int64_t deadline_ns);
  int blocking_poll(std::int64_t deadline_ns);
  std::uint32_t random() noexcept {  // xorshift64*; owner only
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return static_cast<std::uint32_t>((rng_ * 0x2545F4914F6CDD1DULL) >> 32);
  }

  scheduler& sched_;
  const unsigned index_;
  run_queue queue_;
  timer_heap timers_;
  stack_cache stacks_;            // owner only
  registry_shard registry_;
  worker_counters counters_;
  fiber* running_ = nullptr;      // owner only (racy reads by the SIGSEGV handler of this thread)
  eh_globals* eh_globals_ = nullptr;  // this thread's C++ exception globals (fixed for its lifetime)
  bool spinning_ = false;         // owner only
  bool in_idle_list_ = false;     // guarded by scheduler::idle_mu_
  std::uint32_t schedtick_ = 0;   // owner only
  std::uint64_t rng_;             // owner only
  std::uint64_t id_next_ = 0, id_end_ = 0;  // owner only: batch of fiber ids
  // 0: parked (or about to), 1: woken, parked_in_reactor + fd: asleep in
  // the reactor's epoll_wait (blocking_poll), where a futex wake cannot
  // reach; writing the eventfd fd breaks that sleep (unpark).
  static constexpr std::uint32_t parked_in_reactor = 2;
  std::atomic<std::uint32_t> park_word_{0};
  std::atomic<std::int64_t> parked_until_ns_{0};  // 0 = awake
  // Starvation watchdog (only when enabled): the fiber id of the current
  // slice (0 = none) and when it started. Copies, so the monitor thread
  // never dereferences a fiber that may have exited.
  std::atomic<std::uint64_t> slice_fiber_id_{0};
  std::atomic<std::int64_t> slice_start_ns_{0};
  std::uint64_t slice_reported_id_ = 0;  // monitor thread only
  std::int64_t slice_reported_start_ = 0;  // monitor thread only
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// A runtime-owned helper started on first use (the I/O reactor, the
// blocking() thread pool): a runtime that never uses one pays nothing.
// wait_and_stop() shuts every service down once the workers have stopped and
// before it unwinds leftover fibers; the object lives until ~scheduler, so a
// pointer obtained earlier stays valid.
struct runtime_service {
  virtual ~runtime_service() = default;
  virtual void shutdown() noexcept = 0;
};

// A source of ready fibers that a worker about to go idle may poll without
// blocking (the I/O reactor: Go's netpoll(0) in findrunnable). poll_ready()
// runs on a worker thread in scheduler context, readies fibers through the
// ordinary ready() path (so they land on the polling worker's own queue) and
// returns how many it readied. It must not block. Workers call it only while
// external waits are open (begin_external_wait()).
struct ready_poller {
  virtual std::size_t poll_ready() noexcept = 0;
  // The same, blocking until an fd event, a poll break (worker::unpark)
  // or deadline_ns (no_deadline_ns: none), for the last worker to go idle
  // (Go's netpoll(delay)): an fd event then wakes that worker itself, with
  // no thread in between. Calls woken(arg) as soon as the wait has ended,
  // before it readies anyone.
  virtual std::size_t poll_blocking(std::int64_t deadline_ns, void (*woken)(void*) noexcept, void* arg) noexcept = 0;

 protected:
  ~ready_poller() = default;
};
template <class Service>
inline constexpr char service_key = 0;  // its address identifies Service

class scheduler {
 public:
  explicit scheduler(const run_options& options);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;
  ~scheduler();

  // Starts the workers and the main fiber running fn. Caller: the thread in run().
  template <class Fn>
  void start(goro::source_location site, Fn&& main_fn);
  // Blocks the calling thread until the main fiber has finished (or a
  // deadlock was detected), then stops the workers and unwinds every fiber
  // left. Throws deadlock_error.
  void wait_and_stop();

  template <class Fn>
  void spawn(const std::string& name, std::size_t stack_size, goro::source_location site, bool is_main, Fn&& fn);

  void ready(fiber* f);
  void wake_one_worker() noexcept;
  void timer_added(std::int64_t when_ns) noexcept;  // wake a worker sleeping past when_ns
  void on_panic(fiber* f, std::exception_ptr error) noexcept;
  void report_long_slice(const fiber* f, std::uint64_t id, std::int64_t ran_ns, unsigned worker_index) noexcept;
  std::int64_t lock_wait_threshold_ns() const noexcept { return lock_wait_threshold_ns_; }
  std::uint64_t starvation_reports() const noexcept { return starvation_reports_.load(std::memory_order_relaxed); }
  std::uint64_t lock_wait_reports() const noexcept { return lock_wait_reports_.load(std::memory_order_relaxed); }
  void count_lock_wait_report() noexcept { lock_wait_reports_.fetch_add(1, std::memory_order_relaxed); }  // relaxed: statistic

  std::size_t worker_count() const noexcept { return workers_.size(); }
  worker& worker_at(std::size_t i) noexcept { return *workers_[i]; }
  std::size_t default_stack_size() const noexcept { return stack_size_; }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  global_queue& global() noexcept { return global_; }
  std::size_t live_fibers() noexcept;
  void count_exit(worker* w) noexcept;  // by finalize_fiber, on the thread that ran the exit
  std::size_t registry_slots() noexcept;  // registry table capacity, all shards (tests, metrics)
  template <class Visit>
  void for_each_fiber(Visit&& visit);
  std::int64_t earliest_timer_ns() const noexcept;
  bool any_runnable() const noexcept;
  std::size_t pending_timers() const noexcept;
  std::uint64_t foreign_spawned() const noexcept { return foreign_spawned_.load(std::memory_order_relaxed); }

  // The Service of this runtime, created (Service(scheduler&)) on first use
  // unless !create; nullptr once wait_and_stop() has shut the services down.
  template <class Service>
  Service* service(bool create = true);
  // A fiber parks on something outside the runtime (an fd, a blocking()
  // call): the deadlock detector must not call it asleep forever while any
  // such wait is open. seq_cst: read by the detector after it saw every
  // worker idle (the increment precedes the park, hence the idleness).
  void begin_external_wait() noexcept {
    if (external_waits_.fetch_add(1, std::memory_order_seq_cst) == 0) wake_poll_thread();
  }
  void end_external_wait() noexcept { external_waits_.fetch_sub(1, std::memory_order_seq_cst); }
  std::int64_t external_waits() const noexcept { return external_waits_.load(std::memory_order_seq_cst); }

  // --- Who watches the reactor (Go: findrunnable's netpoll and sysmon) ---
  // While external waits are open: a worker about to go idle polls it
  // without blocking (find_runnable); the last worker to go idle blocks in
  // it (worker::blocking_poll; at most one, poll_blocker_), so an fd event
  // wakes a worker directly; and while no worker blocks there, the
  // reactor's poller thread polls every few ms, for events that arrive
  // while every worker is busy in long fibers. Nobody else blocks in epoll:
  // a thread blocked there is woken by every event, which cost a thread
  // hop per event (a 1-worker socket ping-pong took 5.8 instead of 2.9 us).
  worker* poll_blocker() const noexcept { return poll_blocker_.load(std::memory_order_seq_cst); }
  // The eventfd that breaks a blocking poll (the reactor adds it to its
  // epoll set). Only the reactor's constructor calls this, and
  // service<reactor>() runs that under services_mu_. Taken from the
  // process's spare ones or created; ~scheduler hands it back to the spares
  // instead of closing it, so an unpark() still in flight when the runtime
  // ends writes to an eventfd, not to whatever file reused the number.
  int open_poll_break_fd();
  static void write_poll_break(int fd) noexcept;  // wakes the worker asleep in the reactor (worker::unpark)
  // The poller thread's sleep: until wake_poll_thread() when `forever`,
  // else for at most `nap`. wake_poll_thread() wakes only the first kind.
  void poll_thread_sleep(bool forever, std::chrono::nanoseconds nap) noexcept;
  void wake_poll_thread() noexcept;
  void stop_poll_thread() noexcept;  // wakes it from either sleep, for good (the reactor's shutdown)
  bool poll_thread_stopping() const noexcept { return poll_thread_stop_.load(std::memory_order_seq_cst); }
  void leave_poll_blocker() noexcept;  // the blocking worker, as its poll ends
  // The reactor registers itself once it exists and unregisters (nullptr)
  // in its shutdown(), which runs after the workers have stopped: a worker
  // that loaded the pointer can use it for the rest of its loop. Only the
  // reactor registers (reactor_of() relies on it).
  void set_ready_poller(ready_poller* p) noexcept { ready_poller_.store(p, std::memory_order_release); }
  ready_poller* registered_ready_poller() const noexcept { return ready_poller_.load(std::memory_order_acquire); }

 private:
  friend class worker;

  worker* pop_idle() noexcept;
  void finished_main() noexcept { main_done_.notify(); }
  void maybe_declare_deadlock(std::uint64_t epoch_seen);
  void unwind_leftovers();
  friend void finalize_fiber(void* arg) noexcept;

  std::vector<std::unique_ptr<worker>> workers_;
  global_queue global_;
  std::size_t stack_size_;
  bool detect_deadlock_;
  std::chrono::milliseconds deadlock_grace_;
  goro::panic_handler panic_handler_;
  std::string main_name_;

  alignas(64) std::atomic<int> spinning_{0};
  alignas(64) std::atomic<int> idle_count_{0};
  std::mutex idle_mu_;
  std::vector<worker*> idle_;  // guarded by idle_mu_; LIFO: the most recently parked is warmest

  std::atomic<bool> stopping_{false};
  thread_event main_done_;
  std::atomic<bool> deadlocked_{false};
  std::string deadlock_report_;  // written once by the worker that wins deadlocked_

  // Wake-ups and spawns from threads that are not workers: the deadlock
  // detector treats any of them within the grace period as "still alive".
  alignas(64) std::atomic<std::uint64_t> foreign_activity_{0};
  std::atomic<std::uint64_t> foreign_spawned_{0};
  std::atomic<std::uint64_t> foreign_exited_{0};  // exits off this runtime's workers (count_exit)
  std::mutex foreign_add_mu_;  // the foreign registry's owner: whichever foreign thread holds this
  registry_shard foreign_registry_;  // fibers spawned from non-worker threads

  // Diagnostics.
  std::int64_t starvation_threshold_ns_ = 0;
  std::int64_t lock_wait_threshold_ns_ = 0;
  std::atomic<std::uint64_t> starvation_reports_{0};
  std::atomic<std::uint64_t> lock_wait_reports_{0};
  std::thread monitor_;  // the starvation watchdog, when enabled
  std::mutex monitor_mu_;
  std::condition_variable monitor_cv_;
  bool monitor_stop_ = false;  // guarded by monitor_mu_
  void monitor_loop();

  std::atomic<std::int64_t> external_waits_{0};  // see begin_external_wait()
  std::atomic<ready_poller*> ready_poller_{nullptr};  // see set_ready_poller()
  // See poll_blocker(). The slot is taken with a CAS by a worker in
  // park_until() and cleared by the same worker when its poll returns;
  // wakers never read it (they look at the worker's park word).
  alignas(64) std::atomic<worker*> poll_blocker_{nullptr};
  std::atomic<int> poll_break_fd_{-1};          // see open_poll_break_fd(); set once, before the reactor registers
  std::atomic<bool> poll_thread_asleep_{false};  // the poller thread sleeps until wake_poll_thread()
  std::atomic<bool> poll_thread_stop_{false};    // set once, by stop_poll_thread()
  std::atomic<std::uint32_t> poll_thread_word_{0};  // its futex
  // Last members: services are destroyed first, while everything they may
  // touch (workers, queues) still exists.
  std::mutex services_mu_;
  bool services_stopped_ = false;  // guarded by services_mu_
  std::vector<std::pair<const void*, std::unique_ptr<runtime_service>>> services_;  // guarded by services_mu_
  void stop_services() noexcept;
};

template <class Service>
Service* scheduler::service(bool create) {
  std::lock_guard lock(services_mu_);
  if (services_stopped_) return nullptr;
  for (auto& [key, s] : services_)
    if (key == &service_key<Service>) return static_cast<Service*>(s.get());
  if (!create) return nullptr;
  auto owned = std::make_unique<Service>(*this);
  Service* raw = owned.get();
  services_.emplace_back(&service_key<Service>, std::move(owned));
  return raw;
}

inline void scheduler::stop_services() noexcept {
  std::vector<runtime_service*> all;
  {
    std::lock_guard lock(services_mu_);
    services_stopped_ = true;
    for (auto& entry : services_) all.push_back(entry.second.get());
  }
  // Reverse creation order; outside the lock: a blocking() call finishing
  // during the shutdown may look a service up.
  for (auto it = all.rbegin(); it != all.rend(); ++it) (*it)->shutdown();
}

// Counts a fiber's park on something outside the runtime for the deadlock
// detector (scheduler::begin_external_wait), for the scope of the wait.
struct external_wait_scope {
  explicit external_wait_scope(scheduler& s) noexcept : sched(s) { sched.begin_external_wait(); }
  ~external_wait_scope() { sched.end_external_wait(); }
  external_wait_scope(const external_wait_scope&) = delete;
  external_wait_scope& operator=(const external_wait_scope&) = delete;
  scheduler& sched;
};

// ---------------------------------------------------------------------------
// Free functions used by the primitives.

// The fiber running on this thread, or nullptr on a plain thread or in
// scheduler context.
inline fiber* current_fiber() noexcept {
  worker* w = current_worker();
  return w != nullptr ? w->running() : nullptr;
}
inline scheduler* current_scheduler() noexcept {
  worker* w = current_worker();
  return w != nullptr ? &w->sched() : nullptr;
}

// The scheduler a plain thread's request (spawn, a timer) goes to: the
// caller's own when it is a fiber, else the first running one.
inline scheduler& active_scheduler() {
  if (scheduler* s = current_scheduler()) return *s;
  std::lock_guard lock(process().mu);
  if (process().schedulers.empty())
    throw_misuse<misuse_error>("goro runtime request (spawn, timer) while no goro::run() is active");
  return *process().schedulers.front();
}

// Makes a waiting fiber runnable. Any thread. The caller has won the right to
// wake it (unlinked its waiter under the primitive's lock, or owns its timer).
inline void ready(fiber* f) { f->sched->ready(f); }

// Blocks the current fiber (gopark). after(arg) runs on the worker loop once
// this fiber has switched out; it typically releases the lock under which the
// fiber queued its waiter, so a waker can find it only from then on. Returns
// when some worker resumes the fiber after ready(). Fiber only.
inline void park(wait_reason reason, void (*after)(void*) noexcept, void* arg) {
  fiber* f = current_fiber();
  GORO_ASSERT(f != nullptr, "park() outside a fiber");
  f->reason.store(reason, std::memory_order_relaxed);                 // relaxed: descriptive
  f->blocked_since_ns.store(coarse_now_ns(), std::memory_order_relaxed);  // relaxed: descriptive
  transition(f, fiber_state::running, fiber_state::waiting);
  f->after_switch = after;
  f->after_switch_arg = arg;
  f->context.suspend();
  f->reason.store(wait_reason::none, std::memory_order_relaxed);  // relaxed: descriptive
}

inline void unlock_spinlock_after_switch(void* lock) noexcept GORO_NO_TSA { static_cast<spinlock*>(lock)->unlock(); }

// Parks the current fiber or plain thread on w, which the caller queued while
// holding lock. Releases lock (after the switch for a fiber). Returns once the
// waiter was woken; lock is not held then.
inline void block_on(spinlock& lock, waiter& w, wait_reason reason) GORO_RELEASE(lock) GORO_NO_TSA {
  if (w.fib != nullptr) {
    try {
      park(reason, &unlock_spinlock_after_switch, &lock);
    } catch (...) {  // forced unwind at shutdown: park() throws nothing else
      unlink_on_unwind(lock, w);
      throw;
    }
  } else {
    lock.unlock();
    w.event.wait();
  }
}

// Blocks the calling fiber or thread forever (nil channels, empty select).
// A fiber stays visible to dump_fibers, the leak checker and the deadlock
// detector, and is unwound at shutdown.
[[noreturn]] inline void block_forever(wait_reason reason) {
  if (current_fiber() != nullptr) {
    park(reason, nullptr, nullptr);
    GORO_FATAL("a fiber blocked forever was resumed");
  }
  thread_event never;
  for (;;) never.wait();
}

// Yields the current fiber: it goes to the tail of its worker's queue.
inline void yield_fiber() {
  fiber* f = current_fiber();
  if (f == nullptr) {
    std::this_thread::yield();
    return;
  }
  transition(f, fiber_state::running, fiber_state::runnable);
  f->after_switch = [](void* arg) noexcept {
    current_worker()->push_local(static_cast<fiber*>(arg));
  };
  f->after_switch_arg = f;
  f->reason.store(wait_reason::yield, std::memory_order_relaxed);  // relaxed: descriptive
  f->context.suspend();
  f->reason.store(wait_reason::none, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Timed waits. A timer node on the waiting party's stack; fire() runs on some
// worker in scheduler context.

inline void add_timer_on_current_worker(timer_node* t) {
  worker* w = current_worker();
  // Read `when` first: once added, t may fire on another worker and its
  // owner (often a sleeping fiber's frame) may be gone.
  const std::int64_t when = to_ns(t->when);
  if (w->timers().add(t)) w->sched().timer_added(when);
}

// Arms a timer on the calling worker's heap, or (from a plain thread) on the
// first worker of the active runtime.
inline void arm_timer(timer_node* t) {
  if (current_worker() != nullptr) {
    add_timer_on_current_worker(t);
    return;
  }
  scheduler& s = active_scheduler();
  const std::int64_t when = to_ns(t->when);  // before add(): see add_timer_on_current_worker
  if (s.worker_at(0).timers().add(t)) s.timer_added(when);
}


// Sleeps the current fiber (or thread) until deadline, which the caller
// has just computed as now + a positive duration: no second clock read
// (~30 ns in a VM, a tenth of a sleeper's whole life). If it has passed
// meanwhile, the timer fires at once.
inline void sleep_until_future(steady_time deadline) {
  fiber* f = current_fiber();
  if (f == nullptr) {
    std::this_thread::sleep_until(deadline);
    return;
  }
  timer_node timer;
  timer.when = deadline;
  timer.context = f;  // the fiber itself: the heap prefetches a due timer's context
  timer.fire = [](timer_node*, void* context) noexcept {
    auto* sleeper = static_cast<fiber*>(context);
    // Start fetching where its resume pops the registers (it slept long
    // enough to be cold) if it will run soon: behind a long queue the lines
    // would be gone again, and each prefetch of a cold page waits for its
    // page walk. Read before ready(): then it may run and exit elsewhere.
    // (The heap prefetched this line of the object already.) fire() runs
    // on a worker (run_expired), so there is a current one.
    const char* sp = current_worker()->queue_is_long()
                         ? nullptr
                         : static_cast<const char*>(sleeper->context.resume_point());
    ready(sleeper);
    if (sp != nullptr) {
      __builtin_prefetch(sp, 1);
      __builtin_prefetch(sp + 64, 1);
    }
  };
  timer_guard cancel_on_unwind{&timer};  // a no-op after a normal wake-up (the timer fired)
  // The timer is added only after the switch: it may fire on another worker
  // at once, and must not ready a fiber that is still running.
  park(
      wait_reason::sleep, [](void* arg) noexcept { add_timer_on_current_worker(static_cast<timer_node*>(arg)); }, &timer);
}

// Sleeps the current fiber (or thread) until deadline; a fiber whose
// deadline has passed yields instead.
inline void sleep_until_time(steady_time deadline) {
  if (current_fiber() != nullptr && deadline <= std::chrono::steady_clock::now()) {
    yield_fiber();
    return;
  }
  sleep_until_future(deadline);
}

// How a cancellable or timed wait ended.
enum class wait_result { woken, timed_out, canceled };

// The timeout of a select-style wait (select and cancellable waits): on
// firing it claims the select for `index` and wakes the waiting fiber.
struct select_timer {
  timer_node node;
  select_state* sel = nullptr;
  waiter* target = nullptr;  // carries the fiber to wake
  int index = -1;
  static void fire(timer_node*, void* context) noexcept {
    auto* self = static_cast<select_timer*>(context);
    int expected = -1;
    if (self->sel->winner.compare_exchange_strong(expected, self->index, std::memory_order_acq_rel))  // acq_rel: one winner
      self->target->wake();
  }
};

// Parks on w, which the caller queued on `queue` and whose lock it holds,
// until the primitive wakes w, the deadline passes (steady_time::max(): no
// deadline) or the channel `done` (a context's done channel; nullptr: none)
// is closed. Releases lock. The three are the cases of one select: the first
// to claim it wins, so exactly one wakes the waiter, and afterwards w is no
// longer queued anywhere and no timer is left.
//
// Lock order: the primitive's lock, then done's lock (only here, to queue).
// self_unlinked (optional) is set when this function took w off the queue
// itself (timeout or cancellation), as opposed to the primitive popping it.
inline wait_result block_on_until(spinlock& lock, wait_queue& queue, waiter& w, wait_reason reason,
                                  steady_time deadline, chan_core* done = nullptr,
                                  bool* self_unlinked = nullptr) GORO_RELEASE(lock) GORO_NO_TSA {
  const bool timed = deadline != steady_time::max();
  if (!timed && done == nullptr) {
    block_on(lock, w, reason);
    return wait_result::woken;
  }
  select_state sel;
  w.sel = &sel;  // nobody reads it before we unlock
  w.case_index = 0;
  waiter done_waiter;
  std::optional<std::monostate> done_slot;  // nobody sends on a done channel; a slot keeps a stray send safe
  done_waiter.fib = w.fib;
  done_waiter.sel = &sel;
  done_waiter.case_index = 1;
  done_waiter.data = &done_slot;
  // The done channel's lock stays held (like the primitive's) until the
  // fiber has switched out: a cancel must not ready a fiber still running.
  if (done != nullptr) {
    done->lock.lock();
    if (done->closed) {
      done->lock.unlock();
      queue.remove(&w);
      if (self_unlinked != nullptr) *self_unlinked = true;
      lock.unlock();
      return wait_result::canceled;
    }
    done->recvq.push_back(&done_waiter);
  }
  if (w.fib != nullptr) {
    struct park_args {
      spinlock* lock;
      spinlock* done_lock;
      timer_node* timer;
      static void arm_and_unlock(void* arg) noexcept GORO_NO_TSA {
        // Copy first: once the timer is armed it may fire on another worker,
        // and the woken fiber leaves the scope that holds *self.
        const park_args copy = *static_cast<park_args*>(arg);
        if (copy.timer != nullptr) add_timer_on_current_worker(copy.timer);
        if (copy.done_lock != nullptr) copy.done_lock->unlock();
        copy.lock->unlock();
      }
    };
    select_timer timer;
    timer.sel = &sel;
    timer.target = &w;
    timer.index = 2;
    timer.node.when = deadline;
    timer.node.context = &timer;
    timer.node.fire = &select_timer::fire;
    park_args args{&lock, done != nullptr ? &done->lock : nullptr, timed ? &timer.node : nullptr};
    timer_guard cancel_on_exit{timed ? &timer.node : nullptr};
    try {
      park(reason, &park_args::arm_and_unlock, &args);
    } catch (...) {  // forced unwind at shutdown: park() throws nothing else
      unlink_on_unwind(lock, w);
      if (done != nullptr) unlink_on_unwind(done->lock, done_waiter);
      throw;
    }
  } else {
    if (done != nullptr) done->lock.unlock();
    lock.unlock();
    if (timed && !sel.event.wait_until(deadline)) {
      int expected = -1;
      if (!sel.winner.compare_exchange_strong(expected, 2, std::memory_order_acq_rel))
        sel.event.wait();  // a waker claimed us first: its wake() is on the way
    } else if (!timed) {
      sel.event.wait();
    }
  }
  // Unlink what the winner did not consume.
  const int winner = sel.winner.load(std::memory_order_acquire);  // acquire: pairs with the winner's CAS
  if (winner != 0) {
    spin_guard relock(lock);
    if (w.queued) {
      queue.remove(&w);
      if (self_unlinked != nullptr) *self_unlinked = true;
    }
  }
  if (done != nullptr && winner != 1) {
    spin_guard done_lock(done->lock);
    if (done_waiter.queued) done->recvq.remove(&done_waiter);
  }
  return winner == 0 ? wait_result::woken : winner == 1 ? wait_result::canceled : wait_result::timed_out;
}

// ---------------------------------------------------------------------------
// Spawning.

inline void run_fiber(void* arg);
inline void finalize_fiber(void* arg) noexcept;

template <class Fn>
void scheduler::spawn(const std::string& name, std::size_t stack_size, goro::source_location site, bool is_main,
                      Fn&& fn) {
  using callable_t = std::decay_t<Fn>;
  worker* w = current_worker();
  if (w != nullptr && &w->sched() != this) w = nullptr;
  if (stack_size == 0) stack_size = stack_size_;
  if (stack_size > max_stack_size) throw std::bad_alloc();  // as size_class_pool would, at the first run

  // No stack yet: the worker that first runs the fiber takes one (worker::
  // execute), so spawning is an allocation (from this worker's free fiber
  // objects, see fiber.hpp) and a queue push.
  fiber_cache* cache = w != nullptr ? &w->registry().fibers : nullptr;
  fiber* f = new_fiber(cache);
  try {
    if constexpr (sizeof(callable_t) <= fiber::inline_callable_size && alignof(callable_t) <= 16) {
      ::new (static_cast<void*>(f->inline_callable)) callable_t(std::forward<Fn>(fn));
      f->task = [](task_op op, unsigned char* storage) {
        auto* c = std::launder(reinterpret_cast<callable_t*>(storage));
        if (op == task_op::run)
          (*c)();
        else
          c->~callable_t();
      };
    } else {
      auto* heap = new callable_t(std::forward<Fn>(fn));
      std::memcpy(f->inline_callable, &heap, sizeof heap);
      f->task = [](task_op op, unsigned char* storage) {
        callable_t* c;
        std::memcpy(&c, storage, sizeof c);
        if (op == task_op::run)
          (*c)();
        else
          delete c;
      };
    }
  } catch (...) {
    delete_fiber(f, cache);
    throw;
  }
  f->sched = this;
  f->name = name;
  f->spawn_site = site;
  f->is_main = is_main;
  f->id = w != nullptr ? w->next_fiber_id() : process().next_id.fetch_add(1, std::memory_order_relaxed);
  f->context.prepare(context_entry{&run_fiber, &finalize_fiber, f}, stack_size);

  auto register_fiber = [&](registry_shard& shard) {
    try {
      shard.add(f, [this] { return live_fibers(); });  // throws bad_alloc only when a new chunk cannot be had
    } catch (...) {
      std::exchange(f->task, nullptr)(task_op::dispose, f->inline_callable);
      delete_fiber(f, cache);
      throw;
    }
  };
  if (w != nullptr) {
    register_fiber(w->registry());
    // Published to live_fibers() by the push below (release), before any
    // worker can run f and count its exit.
    worker_counters::bump(w->counters().spawned);
    // Go's newproc: the new fiber takes runnext, and it always may run in
    // parallel, so wake an idle worker.
    if (fiber* kicked = w->queue().push_runnext(f)) w->push_local(kicked);
    wake_one_worker();
  } else {
    {
      std::lock_guard lock(foreign_add_mu_);  // foreign threads take turns as the foreign shard's owner
      register_fiber(foreign_registry_);
    }
    foreign_spawned_.fetch_add(1, std::memory_order_relaxed);  // relaxed: published by the push below
    foreign_activity_.fetch_add(1, std::memory_order_relaxed);  // relaxed: read by the deadlock detector after a futex timeout
    global_.push(f);
    wake_one_worker();
  }
}

inline void run_fiber(void* arg) {
  fiber* f = static_cast<fiber*>(arg);
  try {
    f->task(task_op::run, f->inline_callable);
  } catch (boost::context::detail::forced_unwind const&) {
    throw;
  } catch (...) {
    f->sched->on_panic(f, std::current_exception());
  }
  std::exchange(f->task, nullptr)(task_op::dispose, f->inline_callable);
}

[[noreturn]] inline void report_canary_overflow(const fiber* f) noexcept {
  std::fprintf(stderr,
               "goro: stack overflow in fiber %llu \"%s\" (spawned at %s:%u in %s): stack %zu bytes, "
               "its canary zone was overwritten (detected when it switched out)\n",
               static_cast<unsigned long long>(f->id), f->name.c_str(), f->spawn_site.file_name(),
               static_cast<unsigned>(f->spawn_site.line()), f->spawn_site.function_name(),
               f->context.stack().usable_size());
  GORO_FATAL("fiber stack overflow");
}

inline void finalize_fiber(void* arg) noexcept {
  fiber* f = static_cast<fiber*>(arg);
  // The stack goes back to a pool: it must not carry an overflow along.
  if (f->went_deep && !f->context.stack().canary_intact()) report_canary_overflow(f);
  if (f->task != nullptr) std::exchange(f->task, nullptr)(task_op::dispose, f->inline_callable);
  f->state.store(fiber_state::dead, std::memory_order_relaxed);  // relaxed: descriptive
  scheduler* s = f->sched;
  bool is_main = f->is_main;
  registry_shard::remove(f);
  // Runs on f's stack (or, never started, on the unwinder's): see
  // execution_context. The object goes to the free cache of the worker this
  // runs on (owner only: we are on its thread), or to the depot off workers.
  worker* w = current_worker();
  delete_fiber(f, w != nullptr ? &w->registry().fibers : nullptr);
  s->count_exit(w);
  if (is_main) s->finished_main();
}

// ---------------------------------------------------------------------------
// worker implementation

inline std::uint64_t worker::next_fiber_id() {
  if (id_next_ == id_end_) {
    constexpr std::uint64_t batch = 256;
    id_next_ = process().next_id.fetch_add(batch, std::memory_order_relaxed);  // relaxed: unique ids only
    id_end_ = id_next_ + batch;
  }
  return id_next_++;
}

// Spawn+join on 2 workers, where the second worker lives on the first one's
// overflow: median 239 -> 163 ns per fiber against one pop per fiber, whose
// shared counter and queue lines crossed cores every time.
// Called by find_runnable() with our runnext and ring empty, so the ring has
// room for the batch (thieves only ever shrink it).
inline fiber* worker::take_from_global() {
  const std::int64_t queued = sched_.global().size();
  if (queued <= 0) return nullptr;
  // Our share: the queue divided among the workers, plus one, and at most
  // half a ring (the rest stays for the others).
  const std::size_t want =
      std::min<std::size_t>(static_cast<std::size_t>(queued) / sched_.worker_count() + 1, run_queue::capacity / 2);
  fiber* batch[run_queue::capacity / 2];
  std::size_t n = sched_.global().pop_bulk(batch, want);
  if (n == 0) return nullptr;
  for (std::size_t i = 1; i < n; ++i) push_local(batch[i]);
  return batch[0];
}

inline void worker::push_local(fiber* f) {
  if (queue_.push(f)) return;
  // Full: move half of the queue plus f to the global queue (Go runqputslow),
  // so the next overflow is far away and other workers can take them.
  fiber* batch[run_queue::capacity / 2 + 1];
  std::uint32_t n = queue_.grab(batch, run_queue::capacity / 2);
  if (n == 0) {  // thieves emptied part of it meanwhile: there is room now
    if (queue_.push(f)) return;
  }
  batch[n] = f;
  sched_.global().push_bulk(batch, n + 1);
}

inline void worker::start_spinning() noexcept {
  spinning_ = true;
  sched_.spinning_.fetch_add(1, std::memory_order_seq_cst);
}

// found_work: we leave spinning because we found a fiber. Then, as the last
// spinner, we wake another worker (there may be more work, Go's
// resetspinning). A spinner that found nothing only drops out: waking
// someone then would make idle workers wake each other forever.
inline void worker::stop_spinning(bool found_work) noexcept {
  spinning_ = false;
  // seq_cst: pairs with the fence in wake_one_worker (see the protocol above).
  if (sched_.spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1 && found_work) sched_.wake_one_worker();
}

inline void worker::loop() {
  current_worker_slot() = this;
  eh_globals_ = current_eh_globals();
  // An alternate signal stack so a stack overflow report can run.
  std::vector<char> alt_stack(std::max<std::size_t>(SIGSTKSZ, 64 * 1024));
  stack_t ss{};
  ss.ss_sp = alt_stack.data();
  ss.ss_size = alt_stack.size();
  ::sigaltstack(&ss, nullptr);

  while (fiber* f = find_runnable()) execute(f);

  ss.ss_flags = SS_DISABLE;
  ::sigaltstack(&ss, nullptr);
  stacks_.flush();
  current_worker_slot() = nullptr;
}

// A fiber's first run: take a stack (this worker's cache first: the most
// recently freed stack is still hot) and build its context on it.
inline void worker::give_first_stack(fiber* f) noexcept {
  try {
    stack st = f->context.stack_size() == stacks_.stack_size() ? stacks_.take() : take_stack(f->context.stack_size());
    // The next first run will likely write the top of the next cached stack,
    // which may not have been touched for long.
    if (stack next = stacks_.peek()) {
      for (std::size_t line = 64; line <= 512; line += 64) __builtin_prefetch(next.top() - line, 1);
    }
    f->context.create(st, reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(st.top()) & ~std::uintptr_t{63}));
    f->stack_guarded.store(st.guarded, std::memory_order_relaxed);  // relaxed: descriptive
  } catch (...) {
    // Go too dies when it cannot grow a stack; spawn() no longer allocates one.
    std::fprintf(stderr, "goro: fatal: no memory for the stack of fiber %llu \"%s\" (%zu bytes)\n",
                 static_cast<unsigned long long>(f->id), f->name.c_str(), f->context.stack_size());
    GORO_FATAL("out of memory for a fiber stack");
  }
}

inline void worker::execute(fiber* f) {
  running_ = f;
  ++schedtick_;
  worker_counters::bump(counters_.switches);
  transition(f, fiber_state::runnable, fiber_state::running);
  const std::int64_t threshold = sched_.starvation_threshold_ns_;
  std::int64_t slice_start = 0;
  std::uint64_t slice_id = 0;
  if (threshold > 0) {
    slice_start = coarse_now_ns();
    slice_id = f->id;
    slice_start_ns_.store(slice_start, std::memory_order_relaxed);  // relaxed: published by the id store
    slice_fiber_id_.store(slice_id, std::memory_order_release);     // release: pairs with the monitor's acquire
  }
  // Queued fibers are usually cold: spawned on another core, or long ago.
  // Start fetching the object of the fiber after next while this one runs
  // (the next one alone gained less: 110 ns): spawn+join on 2 workers, whose
  // fibers all cross cores, 128 -> 102 ns per fiber; skynet 124 -> 113 ms.
  // Only the address is read from the queue; the object is never touched.
  // Behind a long queue also the object two ahead, and the stack of the one
  // after next where its resume pops the registers (its object was fetched
  // as the one two ahead last time). 100k sleepers woken at once on 2
  // workers: 42 -> 29 ms. Not behind a short queue, where the fiber after
  // next arrived just now and reading its object would wait for it
  // (spawn+join on 2 workers: 105 -> 140 ns). The prefetch loops are
  // written out: GCC 12 drops a call to a helper whose only effect is a
  // prefetch (see timer_heap::run_expired).
  const bool long_queue = queue_is_long();
  for (std::uint32_t ahead = 1; ahead <= (long_queue ? 2u : 1u); ++ahead) {
    if (fiber* queued = queue_.peek(ahead)) {
      for (std::size_t line = 0; line < sizeof(fiber); line += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(queued) + line, 1);  // 1: for writing (state, context)
    }
  }
  if (fiber* later = long_queue ? queue_.peek(1) : nullptr) {
    if (const char* sp = static_cast<const char*>(later->context.resume_point())) {
      __builtin_prefetch(sp, 1);
      __builtin_prefetch(sp + 64, 1);
    }
  }
  if (!f->context.created()) give_first_stack(f);
  bool alive = f->context.resume(eh_globals_);
  running_ = nullptr;
  if (threshold > 0) {
    slice_fiber_id_.store(0, std::memory_order_release);
    std::int64_t ran = coarse_now_ns() - slice_start;
    if (ran > threshold) sched_.report_long_slice(alive ? f : nullptr, slice_id, ran, index_);
  }
  if (!alive) return;  // exited: f and its stack are gone
  if (!f->context.stack().guarded && f->context.stack().near_bottom(f->context.last_sp())) {
    f->went_deep = true;
    if (!f->context.stack().canary_intact()) report_canary_overflow(f);
  }
  if (f->after_switch != nullptr) {
    auto after = std::exchange(f->after_switch, nullptr);
    void* arg = f->after_switch_arg;
    after(arg);  // may make f runnable elsewhere: do not touch f after this
  }
}

inline fiber* worker::steal_work(std::chrono::steady_clock::time_point now) {
  const std::size_t n = sched_.worker_count();
  for (int round = 0; round < 4; ++round) {
    bool last_round = round == 3;
    std::size_t start = random() % n;
    for (std::size_t i = 0; i < n; ++i) {
      worker& victim = sched_.worker_at((start + i) % n);
      if (&victim == this) continue;
      if (sched_.stopping()) return nullptr;
      // Run the victim's due timers: its owner may be busy in a long fiber.
      if (victim.timers_.run_expired(now) > 0) {
        if (fiber* f = queue_.pop_runnext()) return f;
        if (fiber* f = queue_.pop()) return f;
      }
      if (fiber* f = victim.queue_.steal_half_into(queue_, last_round)) {
        worker_counters::bump(counters_.steals);
        return f;
      }
    }
  }
  return nullptr;
}

inline fiber* worker::find_runnable() {
  for (;;) {
    if (sched_.stopping()) return nullptr;
    // (1) timers due here; they ready fibers into our runnext/queue.
    if (timers_.next_deadline_ns() != no_deadline_ns) timers_.run_expired(std::chrono::steady_clock::now());
    // (2) fairness: now and then the global queue goes first, so a busy
    // local queue cannot starve it.
    if (schedtick_ % 61 == 0) {
      if (fiber* f = sched_.global().pop()) return f;
    }
    // (3) local: the hand-off slot, then the queue.
    if (fiber* f = queue_.pop_runnext()) return f;
    if (fiber* f = queue_.pop()) return f;
    // (4) global: a batch, our share of it (Go's globrunqget), so that a
    // worker living on another's overflow does not come back per fiber.
    if (fiber* f = take_from_global()) {
      if (spinning_) stop_spinning(true);
      return f;
    }
    // (4b) fds that became ready, without blocking (Go's netpoll(0)): a fiber
    // whose peer just wrote runs here at once, with no thread hop. Only
    // while some fiber waits outside the runtime (an fd or a blocking()
    // call): relaxed, since a stale 0 loses nothing: park_until() re-reads
    // the count before it picks its sleep (in the reactor or on the futex),
    // and the reactor's poller thread polls while no worker sleeps there
    // (scheduler::poll_blocker()).
    ready_poller* poller = sched_.ready_poller_.load(std::memory_order_acquire);
    if (poller != nullptr && sched_.external_waits_.load(std::memory_order_relaxed) > 0) {
      if (const std::size_t n = poller->poll_ready(); n > 0) {
        worker_counters::bump(counters_.io_polled, n);
        fiber* f = queue_.pop_runnext();
        if (f == nullptr) f = queue_.pop();
        if (f != nullptr) {
          if (spinning_) stop_spinning(true);
          return f;
        }
      }
    }
    // (5) steal, as a spinning worker. Limit spinners to half the busy
    // workers, so a burst of idleness does not make everyone spin.
    const int busy = static_cast<int>(sched_.worker_count()) - sched_.idle_count_.load(std::memory_order_relaxed);
    if (spinning_ || 2 * sched_.spinning_.load(std::memory_order_relaxed) < busy) {
      if (!spinning_) start_spinning();
      if (fiber* f = steal_work(std::chrono::steady_clock::now())) {
        stop_spinning(true);
        return f;
      }
    }
    // (6) park. First stop spinning, then re-check every queue: a submitter
    // that saw us spinning did not wake anyone (protocol in the file comment).
    if (spinning_) {
      stop_spinning(false);
      if (sched_.any_runnable()) {
        start_spinning();
        continue;
      }
    }
    std::int64_t deadline = sched_.earliest_timer_ns();
    if (deadline != no_deadline_ns && deadline <= to_ns(std::chrono::steady_clock::now())) continue;
    // Going idle: give back free stacks after a spike (once the pool has
    // been quiet long enough), waking for that if needed.
    stacks_.pool().trim_if_idle(size_class_pool::monotonic_coarse_ns());
    std::int64_t trim_at = stacks_.pool().trim_deadline_ns();
    if (trim_at != size_class_pool::no_trim) {
      // trim_at is on the coarse monotonic clock; convert to steady time.
      std::int64_t in_ns = trim_at - size_class_pool::monotonic_coarse_ns();
      std::int64_t trim_deadline = to_ns(std::chrono::steady_clock::now()) + std::max<std::int64_t>(in_ns, 1'000'000);
      deadline = std::min(deadline, trim_deadline);
    }
    park_until(deadline);
  }
}

inline void worker::park_until(std::int64_t deadline_ns) {
  park_word_.store(0, std::memory_order_relaxed);  // relaxed: the idle_mu_ critical section orders it before any waker
  {
    std::lock_guard lock(sched_.idle_mu_);
    sched_.idle_.push_back(this);
    in_idle_list_ = true;
    sched_.idle_count_.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: pairs with wake_one_worker's fence
  }
  // Re-check after publishing our idleness (a submitter that ran before it
  // did not see us; one that runs after will wake us).
  bool deadlock_watch = false;
  std::uint64_t epoch = 0;
  if (!sched_.any_runnable() && !sched_.stopping()) {
    if (deadline_ns == no_deadline_ns && sched_.detect_deadlock_ &&
        sched_.idle_count_.load(std::memory_order_seq_cst) == static_cast<int>(sched_.worker_count()) &&
        sched_.external_waits_.load(std::memory_order_seq_cst) == 0) {  // else no watch: idle stays at 0 CPU
      // Everyone is idle and no timer is pending: unless a plain thread wakes
      // a fiber within the grace period, nothing ever will.
      deadlock_watch = true;
      epoch = sched_.foreign_activity_.load(std::memory_order_acquire);
      deadline_ns = to_ns(std::chrono::steady_clock::now() + sched_.deadlock_grace_);
    }
    worker_counters::bump(counters_.parks);
    parked_until_ns_.store(deadline_ns, std::memory_order_release);  // release: read by timer_added()
    while (park_word_.load(std::memory_order_acquire) == 0) {  // acquire: pairs with unpark()
      const steady_time when{std::chrono::nanoseconds(deadline_ns)};
      if (deadline_ns != no_deadline_ns && std::chrono::steady_clock::now() >= when) break;
      // The last worker to go idle while fds are waited on sleeps in the
      // reactor instead: an fd event wakes it there, and unpark() breaks it.
      if (const int readied = blocking_poll(deadline_ns); readied > 0) {
        break;  // it readied fibers onto our own queue: go and run them
      } else if (readied == 0) {
        continue;  // woken, timed out or interrupted: the loop decides
      }
      if (deadline_ns == no_deadline_ns) {
        futex_wait(park_word_, 0);
      } else {
        futex_wait(park_word_, 0, when);
      }
    }
    parked_until_ns_.store(0, std::memory_order_release);
    // Still counted idle here: the detector must see all workers idle,
    // ourselves included.
    if (deadlock_watch && park_word_.load(std::memory_order_acquire) == 0) sched_.maybe_declare_deadlock(epoch);
  }
  bool claimed_by_waker;
  {
    std::lock_guard lock(sched_.idle_mu_);
    claimed_by_waker = !in_idle_list_;
    if (in_idle_list_) {
      sched_.idle_.erase(std::find(sched_.idle_.begin(), sched_.idle_.end(), this));
      in_idle_list_ = false;
      sched_.idle_count_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
  if (claimed_by_waker) {
    // wake_one_worker counted us as spinning on our behalf.
    spinning_ = true;
    worker_counters::bump(counters_.wakes);
  }
}

inline void worker::unpark() noexcept {
  // The exchange is the waker's only touch of runtime memory: the wake-up
  // may let the runtime finish and free this worker at once (the futex
  // address and the fd are only numbers after it). Whether the worker sleeps
  // in the reactor, and the eventfd that breaks that sleep, both come from
  // the word it takes (blocking_poll() stores parked_in_reactor + the fd).
  const std::uint32_t was = park_word_.exchange(1, std::memory_order_seq_cst);
  if (was >= parked_in_reactor) scheduler::write_poll_break(static_cast<int>(was - parked_in_reactor));
  futex_wake(park_word_);
}

// park_until()'s sleep in the reactor: -1 when this worker should sleep on
// its futex instead (no reactor, no fd waits, another worker still running
// and so polling, or another worker already blocked there), else how many
// fibers the poll readied onto this worker's queue.
inline int worker::blocking_poll(std::int64_t deadline_ns) {
  ready_poller* poller = sched_.ready_poller_.load(std::memory_order_acquire);
  if (poller == nullptr || sched_.external_waits() == 0) return -1;
  if (sched_.idle_count_.load(std::memory_order_seq_cst) != static_cast<int>(sched_.worker_count())) return -1;
  worker* none = nullptr;
  if (!sched_.poll_blocker_.compare_exchange_strong(none, this, std::memory_order_seq_cst)) return -1;
  // Tell unpark() how to break the poll. Its exchange and this CAS are on
  // the same word, so one of them comes first: if unpark did, the word is 1
  // and we do not poll; else it takes our word and writes the eventfd named
  // in it. The fd was set before the reactor registered (set_ready_poller,
  // whose release pairs with our acquire of `poller`), and it is never
  // closed (~scheduler keeps it for the next runtime), so a break written
  // after we left, even after the runtime ended, wakes nothing that matters.
  const std::uint32_t in_reactor =
      parked_in_reactor + static_cast<std::uint32_t>(sched_.poll_break_fd_.load(std::memory_order_relaxed));
  std::uint32_t parked = 0;
  if (!park_word_.compare_exchange_strong(parked, in_reactor, std::memory_order_seq_cst)) {
    sched_.leave_poll_blocker();
    return 0;
  }
  worker_counters::bump(counters_.io_blocking_polls);
  // Leave the reactor state before readying anyone: a ready() from here may
  // wake (unpark) this very worker, which must then find it awake.
  struct leave_args {
    worker* self;
    std::uint32_t in_reactor;
  } args{this, in_reactor};
  const std::size_t readied = poller->poll_blocking(
      deadline_ns,
      [](void* arg) noexcept {
        auto& a = *static_cast<leave_args*>(arg);
        // Fails when the word is 1 already: unparked, its break maybe still
        // on its way; a later poll then returns once, spuriously.
        a.self->park_word_.compare_exchange_strong(a.in_reactor, 0, std::memory_order_seq_cst);
        a.self->sched_.leave_poll_blocker();
      },
      &args);
  worker_counters::bump(counters_.io_polled, readied);
  return static_cast<int>(std::min<std::size_t>(readied, INT_MAX));
}

// ---------------------------------------------------------------------------
// scheduler implementation

inline scheduler::scheduler(const run_options& options)
    : stack_size_(options.stack_size != 0 ? options.stack_size : detail::default_stack_size),
      detect_deadlock_(options.detect_deadlock),
      deadlock_grace_(options.deadlock_grace),
      panic_handler_(options.panic_handler),
      main_name_(options.main_name),
      starvation_threshold_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.starvation_threshold).count()),
      lock_wait_threshold_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.lock_wait_threshold).count()) {
  unsigned n = options.workers != 0 ? options.workers : std::max(1u, std::thread::hardware_concurrency());
  workers_.reserve(n);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<worker>(*this, i, stack_size_));
  idle_.reserve(n);
}

inline int scheduler::open_poll_break_fd() {
  int fd = poll_break_fd_.load(std::memory_order_relaxed);  // relaxed: callers are serialised by services_mu_
  if (fd >= 0) return fd;  // a reactor whose construction failed after this took one
  {
    std::lock_guard spare_lock(process().spare_mu);
    if (!process().spare_break_fds.empty()) {
      fd = process().spare_break_fds.back();
      process().spare_break_fds.pop_back();
    }
  }
  if (fd >= 0) {
    std::uint64_t stale;
    (void)!::read(fd, &stale, sizeof stale);  // a late break for its last runtime: drop it (nonblocking)
  } else {
    fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "goro: eventfd");
  }
  poll_break_fd_.store(fd, std::memory_order_relaxed);  // relaxed: published by set_ready_poller's release
  return fd;
}

inline void scheduler::leave_poll_blocker() noexcept {
  poll_blocker_.store(nullptr, std::memory_order_seq_cst);  // seq_cst: a Dekker pair with poll_thread_sleep
  wake_poll_thread();  // it watches the reactor again while we run
}

inline void scheduler::write_poll_break(int fd) noexcept {
  if (fd < 0) return;
  const std::uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);  // EAGAIN only at a counter of 2^64-2: it is readable then anyway
}

inline void scheduler::poll_thread_sleep(bool forever, std::chrono::nanoseconds nap) noexcept {
  // The word goes to 0 before the checks below: a waker or the stopper that
  // acts after them stores 1 after it, so the futex_wait cannot miss them.
  poll_thread_word_.store(0, std::memory_order_seq_cst);
  if (poll_thread_stopping()) return;
  if (!forever) {
    futex_wait(poll_thread_word_, 0, std::chrono::steady_clock::now() + nap);
    return;
  }
  // Dekker with wake_poll_thread(): publish that we sleep, then re-check
  // what the wakers change (the wait count and the blocker slot).
  poll_thread_asleep_.store(true, std::memory_order_seq_cst);
  if (external_waits() == 0 || poll_blocker() != nullptr) futex_wait(poll_thread_word_, 0);
  poll_thread_asleep_.store(false, std::memory_order_seq_cst);
}

inline void scheduler::wake_poll_thread() noexcept {
  if (!poll_thread_asleep_.load(std::memory_order_seq_cst)) return;  // the common case: it naps, or there is none
  if (!poll_thread_asleep_.exchange(false, std::memory_order_seq_cst)) return;
  poll_thread_word_.store(1, std::memory_order_release);
  futex_wake(poll_thread_word_);
}

inline void scheduler::stop_poll_thread() noexcept {
  poll_thread_stop_.store(true, std::memory_order_seq_cst);
  poll_thread_word_.store(1, std::memory_order_seq_cst);
  futex_wake(poll_thread_word_);
}

inline scheduler::~scheduler() {
  if (const int fd = poll_break_fd_.load(std::memory_order_relaxed); fd >= 0) {  // relaxed: our workers are gone
    std::lock_guard lock(process().spare_mu);
    try {
      process().spare_break_fds.push_back(fd);
    } catch (...) {
      // No memory to keep it: leak the fd rather than close it under a late writer.
    }
  }
  // Timers still armed by objects that outlive the runtime (a goro::timer
  // kept past run()) must not point into destroyed heaps.
  for (auto& w : workers_) w->timers().clear_all();
  std::lock_guard lock(process().mu);
  auto& all = process().schedulers;
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
}

inline void install_signal_handlers();

template <class Fn>
void scheduler::start(goro::source_location site, Fn&& main_fn) {
  install_signal_handlers();
  {
    std::lock_guard lock(process().mu);
    process().schedulers.push_back(this);
  }
  // Before the main fiber exists: a mutex it locks first thing must already
  // record its holder. (The worker threads' start orders this store.)
  if (lock_wait_threshold_ns_ > 0) process().lock_diagnostics_runtimes.fetch_add(1, std::memory_order_relaxed);  // relaxed: a setting
  spawn(main_name_, 0, site, true, std::forward<Fn>(main_fn));
  for (auto& w : workers_) {
    worker* raw = w.get();
    raw->thread_ = std::thread([raw] { raw->loop(); });
  }
  if (starvation_threshold_ns_ > 0) monitor_ = std::thread([this] { monitor_loop(); });
}

inline std::string describe_fiber_by_id(std::uint64_t id);

// The starvation watchdog: a plain thread (Go's sysmon, for reports only)
// that looks at each worker's current slice every half threshold. It names
// the fiber while it still runs: a busy fiber that then exits can no longer
// be described when its slice ends.
inline void scheduler::monitor_loop() {
  const auto period = std::chrono::nanoseconds(std::max<std::int64_t>(starvation_threshold_ns_ / 2, 1'000'000));
  std::unique_lock lock(monitor_mu_);
  while (!monitor_cv_.wait_for(lock, period, [this] { return monitor_stop_; })) {
    std::int64_t now = coarse_now_ns();
    for (auto& w : workers_) {
      std::uint64_t id = w->slice_fiber_id_.load(std::memory_order_acquire);  // acquire: pairs with execute()
      std::int64_t start = w->slice_start_ns_.load(std::memory_order_relaxed);
      if (id == 0 || now - start <= starvation_threshold_ns_) continue;
      if (w->slice_reported_id_ == id && w->slice_reported_start_ == start) continue;  // once per slice
      w->slice_reported_id_ = id;
      w->slice_reported_start_ = start;
      starvation_reports_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
      const std::string who = describe_fiber_by_id(id);
      std::fprintf(stderr,
                   "goro: starvation: %s has been running for %lld ms on worker %u without blocking "
                   "or yielding; every fiber queued on that worker waits (see dump_fibers for fiber %llu)\n",
                   who.c_str(), static_cast<long long>((now - start) / 1'000'000), w->index(),
                   static_cast<unsigned long long>(id));
    }
  }
}

inline void scheduler::report_long_slice(const fiber* f, std::uint64_t id, std::int64_t ran_ns,
                                         unsigned worker_index) noexcept {
  if (f == nullptr) {
    std::fprintf(stderr, "goro: starvation: fiber %llu ran %lld ms on worker %u without yielding, then exited\n",
                 static_cast<unsigned long long>(id), static_cast<long long>(ran_ns / 1'000'000), worker_index);
    return;
  }
  std::fprintf(stderr,
               "goro: starvation: fiber %llu \"%s\" (spawned at %s:%u in %s) ran %lld ms on worker %u "
               "without blocking or yielding\n",
               static_cast<unsigned long long>(id), f->name.c_str(), f->spawn_site.file_name(),
               static_cast<unsigned>(f->spawn_site.line()), f->spawn_site.function_name(),
               static_cast<long long>(ran_ns / 1'000'000), worker_index);
}

inline void scheduler::wait_and_stop() {
  main_done_.wait();
  if (monitor_.joinable()) {
    {
      std::lock_guard lock(monitor_mu_);
      monitor_stop_ = true;
    }
    monitor_cv_.notify_all();
    monitor_.join();
  }
  stopping_.store(true, std::memory_order_release);  // release: pairs with stopping()
  for (auto& w : workers_) w->unpark();
  for (auto& w : workers_)
    if (w->thread_.joinable()) w->thread_.join();
  stop_services();  // joins the I/O poller; waits for in-flight blocking() calls
  unwind_leftovers();
  if (lock_wait_threshold_ns_ > 0) process().lock_diagnostics_runtimes.fetch_sub(1, std::memory_order_relaxed);
  if (deadlocked_.load(std::memory_order_acquire)) throw deadlock_error(deadlock_report_);
}

inline void scheduler::unwind_leftovers() {
  // Fibers still alive when run()'s function returned (Go kills them with the
  // process). Unwind each on this thread so its destructors run and its stack
  // is freed, and record them: goro::testing reports them as leaks.
  for (int pass = 0; pass < 8; ++pass) {
    std::vector<fiber*> left;
    std::string report;
    for_each_fiber([&](fiber* f) {
      left.push_back(f);
      fiber_info info = snapshot(f);
      report += "fiber " + std::to_string(info.id) + " \"" + info.name + "\" [" +
                std::string(info.state == fiber_state::waiting ? to_string(info.reason) : to_string(info.state)) +
                "]: spawned at " + info.file + ":" + std::to_string(info.line) + "\n";
    });
    if (left.empty()) return;
    {
      std::lock_guard lock(process().mu);
      process().last_unwound_report = report;
    }
    if (!deadlocked_.load(std::memory_order_relaxed))
      process().unwound_at_shutdown.fetch_add(left.size(), std::memory_order_relaxed);  // relaxed: statistic
    for (fiber* f : left) f->context.destroy();
  }
}

template <class Visit>
void scheduler::for_each_fiber(Visit&& visit) {
  for (auto& w : workers_) w->registry().for_each(visit);
  foreign_registry_.for_each(visit);
}

// Exits are read before spawns: a fiber's spawn count is published before it
// can run (spawn's queue push), so every exit seen has its spawn seen too and
// the difference never underflows. Fibers spawned and exited between the two
// reads are counted as alive: so the exits are read again, and while they
// moved (a few times at most) the count is taken again. The result is exact
// when no exit lands during a read, and an upper bound otherwise, never
// below the truth (a reader preempted between its reads over-counted by
// thousands under ASan before the retry).
inline std::size_t scheduler::live_fibers() noexcept {
  auto exits = [this] {
    std::uint64_t n = foreign_exited_.load(std::memory_order_acquire);  // acquire: see the spawns before
    for (auto& w : workers_) n += w->counters().exited.load(std::memory_order_acquire);  // acquire: as above
    return n;
  };
  auto spawns = [this] {
    std::uint64_t n = foreign_spawned_.load(std::memory_order_relaxed);  // relaxed: ordered by the loads above
    for (auto& w : workers_) n += w->counters().spawned.load(std::memory_order_relaxed);  // relaxed: as above
    return n;
  };
  std::uint64_t exited = exits();
  for (int attempt = 0;; ++attempt) {
    const std::uint64_t spawned = spawns();
    const std::uint64_t exited_again = exits();
    if (exited_again == exited || attempt == 3) return static_cast<std::size_t>(spawned - exited);
    exited = exited_again;
  }
}

inline std::size_t scheduler::registry_slots() noexcept {
  std::size_t n = foreign_registry_.slots();
  for (auto& w : workers_) n += w->registry().slots();
  return n;
}

// After f's exit: counted by the worker it ran on when that is one of ours,
// else (a fiber unwound off the workers, or run by another runtime's worker)
// in the shared counter. Release: publishes the spawn count seen by whoever
// ran f (live_fibers).
inline void scheduler::count_exit(worker* w) noexcept {
  if (w != nullptr && &w->sched() == this) {
    auto& c = w->counters().exited;
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // single writer: its worker
  } else {
    foreign_exited_.fetch_add(1, std::memory_order_release);
  }
}

inline std::int64_t scheduler::earliest_timer_ns() const noexcept {
  std::int64_t earliest = no_deadline_ns;
  for (auto& w : workers_) earliest = std::min(earliest, w->timers_.next_deadline_ns());
  return earliest;
}

inline std::size_t scheduler::pending_timers() const noexcept {
  std::size_t n = 0;
  for (auto& w : workers_) n += w->timers_.size();
  return n;
}

inline bool scheduler::any_runnable() const noexcept {
  if (!global_.empty()) return true;
  for (auto& w : workers_)
    if (!w->queue_.empty()) return true;
  return false;
}

inline worker* scheduler::pop_idle() noexcept {
  std::lock_guard lock(idle_mu_);
  if (idle_.empty()) return nullptr;
  worker* w = idle_.back();
  idle_.pop_back();
  w->in_idle_list_ = false;
  idle_count_.fetch_sub(1, std::memory_order_seq_cst);
  return w;
}

inline void scheduler::wake_one_worker() noexcept {
  // seq_cst fence: the caller's queue push must be visible before we read
  // idle_count_/spinning_ (StoreLoad), pairing with park_until()'s
  // publish-then-recheck and stop_spinning()'s decrement-then-recheck.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_count_.load(std::memory_order_relaxed) == 0) return;  // relaxed: ordered by the fence
  int expected = 0;
  if (!spinning_.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) return;
  worker* w = pop_idle();
  if (w == nullptr) {
    spinning_.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  w->unpark();  // it starts as a spinner (park_until sees it was claimed)
}

inline void scheduler::timer_added(std::int64_t when_ns) noexcept {
  // A sleeping worker computed its deadline before this timer existed.
  for (auto& w : workers_) {
    std::int64_t until = w->parked_until_ns();
    if (until != 0 && until > when_ns) {
      w->unpark();
      return;
    }
  }
}

inline void scheduler::ready(fiber* f) {
  transition(f, fiber_state::waiting, fiber_state::runnable);
  worker* w = current_worker();
  if (w != nullptr && &w->sched() == this) {
    fiber* kicked = w->queue().push_runnext(f);
    if (kicked != nullptr) {
      w->push_local(kicked);
      wake_one_worker();
    } else if (w->queue().size() > 1) {  // more than the hand-off: others could help
      wake_one_worker();
    }
    return;
  }
  global_.push(f);
  foreign_activity_.fetch_add(1, std::memory_order_release);  // release: pairs with the detector's acquire
  wake_one_worker();
}

inline void scheduler::maybe_declare_deadlock(std::uint64_t epoch_seen) {
  if (stopping() || main_done_.notified()) return;  // run() is shutting down: not a deadlock
  if (live_fibers() == 0) return;
  if (idle_count_.load(std::memory_order_seq_cst) != static_cast<int>(worker_count())) return;
  if (foreign_activity_.load(std::memory_order_acquire) != epoch_seen) return;
  if (external_waits_.load(std::memory_order_seq_cst) != 0) return;  // an fd or a blocking() call may wake one
  if (any_runnable() || earliest_timer_ns() != no_deadline_ns) return;
  if (deadlocked_.exchange(true, std::memory_order_acq_rel)) return;
  std::ostringstream out;
  out << "goro: all fibers are asleep - deadlock!\n\n";
  for_each_fiber([&](fiber* f) {
    fiber_info info = snapshot(f);
    out << "fiber " << info.id;
    if (!info.name.empty()) out << " \"" << info.name << "\"";
    out << " [" << to_string(info.reason) << "]:\n    spawned at " << info.file << ":" << info.line << " in "
        << info.function << "\n";
  });
  deadlock_report_ = out.str();
  main_done_.notify();
}

inline void scheduler::on_panic(fiber* f, std::exception_ptr error) noexcept {
  fiber_info info = snapshot(f);
  if (panic_handler_) {
    try {
      panic_handler_(info, error);
      return;
    } catch (...) {
      // a throwing handler is itself a panic: fall through to the default
    }
  }
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::fprintf(stderr, "goro: panic: exception escaped fiber %llu \"%s\" (spawned at %s:%u in %s): %s\n\n",
               static_cast<unsigned long long>(info.id), info.name.c_str(), info.file.c_str(), info.line,
               info.function.c_str(), what.c_str());
  GORO_FATAL("unhandled exception in a fiber");
}

// ---------------------------------------------------------------------------
inline fiber_info snapshot(const fiber* f) {
  fiber_info info;
  info.id = f->id;
  info.name = f->name;
  info.file = f->spawn_site.file_name();
  info.line = f->spawn_site.line();
  info.function = f->spawn_site.function_name();
  info.state = f->state.load(std::memory_order_relaxed);  // relaxed: descriptive
  info.reason = info.state == fiber_state::waiting ? f->reason.load(std::memory_order_relaxed) : wait_reason::none;
  if (info.state == fiber_state::waiting)
    info.waiting_for =
        std::chrono::nanoseconds(coarse_now_ns() - f->blocked_since_ns.load(std::memory_order_relaxed));
  info.stack_size = f->context.stack_size();
  info.guarded = f->stack_guarded.load(std::memory_order_relaxed);  // relaxed: descriptive
  info.is_main = f->is_main;
  return info;
}

inline std::string describe_fiber(const fiber* f) {
  std::string s = "fiber " + std::to_string(f->id);
  if (!f->name.empty()) s += " \"" + f->name + "\"";
  s += " spawned at " + std::string(f->spawn_site.file_name()) + ":" + std::to_string(f->spawn_site.line());
  return s;
}

// Finds a live fiber by id and describes it (diagnostic paths only: walks
// every registry).
inline std::string describe_fiber_by_id(std::uint64_t id) {
  if (id == 0) return "a plain thread (or a fiber of no runtime)";
  std::string found;
  std::lock_guard lock(process().mu);
  for (scheduler* s : process().schedulers)
    s->for_each_fiber([&](fiber* f) {
      if (f->id == id) found = describe_fiber(f);
    });
  return found.empty() ? "fiber " + std::to_string(id) + " (no longer alive)" : found;
}

inline std::string describe_current_fiber() {
  fiber* f = current_fiber();
  return f != nullptr ? describe_fiber(f) : std::string("a plain thread, not a fiber");
}

// Every live fiber of every running scheduler, in Go's goroutine-dump style.
inline void write_fiber_dump(std::ostream& out) {
  std::lock_guard lock(process().mu);
  for (scheduler* s : process().schedulers) {
    s->for_each_fiber([&](fiber* f) {
      fiber_info info = snapshot(f);
      out << "fiber " << info.id;
      if (!info.name.empty()) out << " \"" << info.name << "\"";
      out << " [" << to_string(info.state);
      if (info.state == fiber_state::waiting) {
        out << ": " << to_string(info.reason) << ", "
            << std::chrono::duration_cast<std::chrono::milliseconds>(info.waiting_for).count() << " ms";
      }
      out << "]" << (info.is_main ? " (main)" : "") << ":\n    spawned at " << info.file << ":" << info.line
          << "\n    in " << info.function << "\n    stack " << info.stack_size / 1024 << " KiB"
          << (info.guarded ? ", guard page" : ", canary") << "\n\n";
    });
  }
}

[[noreturn]] inline void fatal(const char* file, int line, const char* message) noexcept {
  std::fprintf(stderr, "goro: fatal error: %s\n    at %s:%d\n\n", message, file, line);
  try {
    std::ostringstream dump;
    write_fiber_dump(dump);
    std::fputs(dump.str().c_str(), stderr);
  } catch (...) {
  }
  std::fflush(stderr);
  std::abort();
}

// ---------------------------------------------------------------------------
// Stack overflow report: SIGSEGV/SIGBUS on the alternate stack. A fault in the
// guard page of the fiber running on this thread is reported with the
// fiber's identity; anything else goes to the previous handler.
extern "C" inline void goro_fault_handler(int sig, siginfo_t* info, void* context) {
  worker* w = tls_current_worker;
  fiber* f = w != nullptr ? w->running() : nullptr;
  if (f != nullptr && f->context.stack().in_guard(info->si_addr)) {
    char buf[1024];
    int n = std::snprintf(buf, sizeof buf,
                          "goro: stack overflow in fiber %llu \"%s\" (spawned at %s:%u in %s): "
                          "stack %zu bytes, fault at %p in its guard page\n",
                          static_cast<unsigned long long>(f->id), f->name.c_str(), f->spawn_site.file_name(),
                          static_cast<unsigned>(f->spawn_site.line()), f->spawn_site.function_name(),
                          f->context.stack().usable_size(), info->si_addr);
    if (n > 0) (void)!::write(2, buf, static_cast<std::size_t>(std::min<int>(n, sizeof buf - 1)));
    ::signal(SIGABRT, SIG_DFL);
    std::abort();
  }
  const struct sigaction& previous = sig == SIGSEGV ? process().previous_segv : process().previous_bus;
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(sig, info, context);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN && previous.sa_handler != nullptr) {
    previous.sa_handler(sig);
    return;
  }
  ::signal(sig, SIG_DFL);  // return and fault again: default action (core)
}

inline void install_signal_handlers() {
  std::call_once(process().signal_handlers_once, [] {
    struct sigaction action {};
    action.sa_sigaction = &goro_fault_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, &process().previous_segv);
    ::sigaction(SIGBUS, &action, &process().previous_bus);
  });
}

// Returns a stack to the releasing worker's cache; defined here because the
// switch layer does not know workers.
inline void execution_context::stack_releaser::deallocate(boost::context::stack_context&) noexcept {
  worker* w = current_worker();
  if (w != nullptr && stack_to_release.size_class == w->stacks().stack_size())
    w->stacks().give(stack_to_release);
  else
    give_stack(stack_to_release);
}

}  // namespace goro::detail
