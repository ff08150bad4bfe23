// SPDX-License-Identifier: MIT
// The fiber object: one goroutine. A small heap object (with the spawned
// callable inline when it fits); its stack is taken only when a worker first
// runs it and goes back to that worker's pool when it exits. So a fiber that
// is spawned and runs to completion without blocking reuses a hot stack, and
// a million queued fibers cost no stack pages (marl and Go's runnext get the
// same effect differently). A parked shallow fiber costs one touched stack
// page plus this object.
//
// Invariants:
//   * Ownership: a runnable fiber is owned by the queue that holds it; a
//     running one by the worker running it; a waiting one by the primitive it
//     waits on (through its waiter). Exactly one owner at a time; ready() is
//     the only way from waiting to runnable.
//   * Identity fields (id, name, spawn_site, stack) are written before the
//     fiber is registered and never change: racy readers (dump_fibers) read
//     them with the fiber's registry slot pinned (registry_shard, in
//     scheduler.hpp), which its exit waits out.
//   * state/reason/blocked_since are atomics so diagnostics may read them while
//     the fiber runs elsewhere; they are descriptive, never used to synchronise.
//   * Every state change goes through transition(), which checks `from` when
//     GORO_DEBUG_CHECKS is on.
#pragma once

#include "goro/detail/assert.hpp"
#include "goro/detail/switch.hpp"
#include "goro/wait_reason.hpp"

#include "goro/config.hpp"
#include "goro/source_location.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace goro::detail {

class scheduler;

// Monotonic coarse clock (a few ns, ~4 ms resolution): good enough for "how
// long has it waited" without paying for a precise clock read per park.
inline std::int64_t coarse_now_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A fiber's name: one pointer, null for the (usual) unnamed fiber, so an
// unnamed spawn neither allocates nor carries a 32-byte std::string. Reads
// like the std::string it replaced (c_str, empty, +, conversion).
class fiber_name {
 public:
  fiber_name() noexcept = default;
  fiber_name(const fiber_name&) = delete;
  fiber_name& operator=(const fiber_name&) = delete;
  ~fiber_name() { delete[] text_; }

  fiber_name& operator=(const std::string& name) {
    char* copy = nullptr;
    if (!name.empty()) {
      copy = new char[name.size() + 1];
      std::memcpy(copy, name.c_str(), name.size() + 1);
    }
    delete[] text_;
    text_ = copy;
    return *this;
  }
  const char* c_str() const noexcept { return text_ != nullptr ? text_ : ""; }
  bool empty() const noexcept { return text_ == nullptr; }
  operator std::string() const { return std::string(c_str()); }
  friend std::string operator+(const char* lhs, const fiber_name& rhs) { return std::string(lhs) + rhs.c_str(); }
  friend std::string operator+(const std::string& lhs, const fiber_name& rhs) { return lhs + rhs.c_str(); }

 private:
  char* text_ = nullptr;
};

// What the task entry point is asked to do with the spawned callable.
enum class task_op : unsigned char { run, dispose };

// 240 bytes on x86_64: every byte is paid per live fiber (a million queued
// fibers are a million of these, all touched), so fields are packed by size
// and the one-byte ones share a word.
struct fiber {
  execution_context context;  // the one switch point's per-fiber data; also holds the stack size

  // --- the task (destroyed when it returns or the fiber is unwound) ---
  // task(run, storage) calls it; task(dispose, storage) destroys it (never
  // throws). storage is inline_callable: the callable itself when it fits,
  // else a pointer to it on the heap. nullptr once disposed. (Offset 96 on
  // x86_64, 16-aligned: inline_callable needs no padding.)
  static constexpr std::size_t inline_callable_size = 48;
  alignas(16) unsigned char inline_callable[inline_callable_size];
  void (*task)(task_op op, unsigned char* storage) = nullptr;
  scheduler* sched = nullptr;

  // --- identity: immutable once registered ---
  std::uint64_t id = 0;
  fiber_name name;
  goro::source_location spawn_site;

  // --- park hand-off: run by the worker after this fiber switched out ---
  void (*after_switch)(void* arg) noexcept = nullptr;
  void* after_switch_arg = nullptr;

  // --- descriptive state for diagnostics ---
  std::atomic<std::int64_t> blocked_since_ns{0};
  std::atomic<fiber_state> state{fiber_state::runnable};
  std::atomic<wait_reason> reason{wait_reason::none};
  std::atomic<bool> stack_guarded{false};  // for diagnostics: set when the stack is taken
  bool is_main = false;  // identity
  // --- unguarded stacks: set once the fiber switched out near its bottom ---
  bool went_deep = false;  // owner: whoever runs the fiber

  // --- the registry slot holding this fiber (registry_shard): set at spawn ---
  std::atomic<std::uintptr_t>* reg_slot = nullptr;
};
// Four cache lines in a plain build (the sanitizers' switch state adds up
// to 32 bytes): a fiber spawned on one core and run on another moves every
// line it spans, so a fifth line costs on every cross-core spawn.
static_assert(sizeof(void*) != 8 || sizeof(fiber) <= (GORO_TSAN || GORO_ASAN ? 304 : 256),
              "fiber grew: every byte is paid per live fiber");

// ---------------------------------------------------------------------------
// Fiber object storage. Fiber objects come from goro's own slots instead of
// one malloc each, for two measured reasons:
//   * glibc serves a worker thread from a non-main arena, which grows its heap
//     a page at a time with an mprotect each (no top pad there): spawning a
//     million fibers on one worker spent 31% of its time in mprotect and 30%
//     in first-touch page faults (perf, bench/spawn_bench).
//   * the objects of exited fibers are best reused while still resident and
//     cache-warm, by the worker that spawns next (Go's per-P gFree list).
// Layout: slots are carved from 4 MiB MAP_NORESERVE chunks, fiber_batch at a
// time, and each carved range is prefaulted with one MADV_POPULATE_WRITE
// (about half the cost of faulting its pages one by one in a VM). Free slots
// form singly linked lists: each worker keeps one (fiber_cache, owner only);
// a full one moves to the process-wide depot as one batch, and an empty one
// takes a batch back, so a spawner fed by another worker's exits pays one
// lock per fiber_batch fibers. The depot never unmaps: like Go's g objects,
// the storage of a million-fiber spike stays with the process (its pages are
// reused by the next spike, not returned to the OS).
// Under ASan, fibers use plain new/delete so use-after-free stays detectable.
//
// Invariants:
//   * A slot is in at most one list; a slot in a list holds no fiber.
//   * fiber_cache is touched only by its owner thread; depot lists only under
//     its mutex.
union fiber_slot {
  fiber_slot* next;
  alignas(fiber) unsigned char bytes[sizeof(fiber)];
};

inline constexpr std::size_t fiber_batch = 128;

class fiber_depot {
 public:
  // A list of up to fiber_batch free slots (never empty): a returned batch,
  // else freshly carved ones. Throws std::bad_alloc when the kernel refuses.
  fiber_slot* take(std::size_t& count) {
    std::lock_guard lock(mu_);
    if (!batches_.empty()) {
      batch b = batches_.back();
      batches_.pop_back();
      count = b.count;
      return b.head;
    }
    if (partial_.head != nullptr) {
      count = partial_.count;
      return std::exchange(partial_, batch{}).head;
    }
    return carve(count);
  }
  // One free slot, for a fiber spawned or freed off the workers (no cache):
  // from the partial list, else a whole batch is opened into it.
  fiber_slot* take_one() {
    std::lock_guard lock(mu_);
    if (partial_.head == nullptr) {
      if (!batches_.empty()) {
        partial_ = batches_.back();
        batches_.pop_back();
      } else {
        partial_.head = carve(partial_.count);
      }
    }
    fiber_slot* s = partial_.head;
    partial_.head = s->next;
    --partial_.count;
    return s;
  }
  // Takes back a list of count free slots. Short lists (a worker's leftovers,
  // single fibers freed off any worker) are merged into whole batches.
  void give(fiber_slot* head, std::size_t count) noexcept {
    std::lock_guard lock(mu_);
    if (count < fiber_batch) {
      while (head != nullptr) {
        fiber_slot* next = head->next;
        head->next = partial_.head;
        partial_.head = head;
        if (++partial_.count == fiber_batch) push(std::exchange(partial_, batch{}));
        head = next;
      }
      return;
    }
    push(batch{head, count});
  }

 private:
  struct batch {
    fiber_slot* head = nullptr;
    std::size_t count = 0;
  };
  void push(batch b) noexcept {
    try {
      batches_.push_back(b);
    } catch (...) {
      // No memory for the list itself: these slots' storage leaks.
    }
  }
  static constexpr std::size_t chunk_bytes = 4 << 20;

  fiber_slot* carve(std::size_t& count) {
    const std::size_t bytes = fiber_batch * sizeof(fiber_slot);
    if (static_cast<std::size_t>(end_ - next_) < bytes) {
      void* p = ::mmap(nullptr, chunk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      next_ = static_cast<char*>(p);  // the old chunk's tail (< one batch) is left unused
      end_ = next_ + chunk_bytes;
    }
    char* first = next_;
    next_ += bytes;
    // Prefault the batch's pages in one call; failure (kernel < 5.14) only
    // means they fault in on first use.
#ifdef MADV_POPULATE_WRITE
    const std::uintptr_t ps = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(first) & ~(ps - 1);
    const std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(next_) + ps - 1) & ~(ps - 1);
    ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE);
#endif
    auto* slots = reinterpret_cast<fiber_slot*>(first);
    for (std::size_t i = 0; i + 1 < fiber_batch; ++i) slots[i].next = &slots[i + 1];
    slots[fiber_batch - 1].next = nullptr;
    count = fiber_batch;
    return slots;
  }

  std::mutex mu_;
  std::vector<batch> batches_;  // guarded by mu_: whole batches (fiber_batch slots each)
  batch partial_;               // guarded by mu_: fewer than fiber_batch slots
  char* next_ = nullptr;        // guarded by mu_: the uncarved part of the newest chunk
  char* end_ = nullptr;         // guarded by mu_
};

inline fiber_depot& depot() noexcept {
  static fiber_depot* d = new fiber_depot();  // never destroyed: fibers may exit during static destruction
  return *d;
}

// One worker's free fiber slots. Owner thread only.
class fiber_cache {
 public:
  fiber_cache() = default;
  fiber_cache(const fiber_cache&) = delete;
  fiber_cache& operator=(const fiber_cache&) = delete;
  ~fiber_cache() {
    if (head_ != nullptr) depot().give(head_, count_);
  }

  void* allocate() {
    if (head_ == nullptr) head_ = depot().take(count_);
    fiber_slot* s = head_;
    head_ = s->next;
    --count_;
    return s;
  }
  void deallocate(void* p) noexcept {
    auto* s = static_cast<fiber_slot*>(p);
    if (count_ == fiber_batch) {  // full: hand the whole list over, keep this one
      depot().give(head_, count_);
      head_ = nullptr;
      count_ = 0;
    }
    s->next = head_;
    head_ = s;
    ++count_;
  }

 private:
  fiber_slot* head_ = nullptr;
  std::size_t count_ = 0;
};

// A new fiber object from cache (the calling worker's), or from the depot when
// there is no worker. Throws std::bad_alloc.
inline fiber* new_fiber(fiber_cache* cache) {
  if constexpr (asan_enabled) {
    (void)cache;
    return new fiber();
  } else {
    void* p = cache != nullptr ? cache->allocate() : depot().take_one();
    // Value-initialised on purpose: the zeroing `rep stos` writes whole
    // cache lines, which the core can own without first fetching them from
    // the core that last ran (and freed) this object. Default-initialising
    // (member by member) was ~7% faster on 1 worker and 20-40% slower for
    // spawn+join on 2 workers (bench/RESULTS.md, session 5).
    return ::new (p) fiber();
  }
}

// Destroys f and frees its slot into cache (the calling worker's), or the
// depot when there is no worker.
inline void delete_fiber(fiber* f, fiber_cache* cache) noexcept {
  if constexpr (asan_enabled) {
    (void)cache;
    delete f;
  } else {
    f->~fiber();
    if (cache != nullptr) {
      cache->deallocate(f);
    } else {
      auto* s = reinterpret_cast<fiber_slot*>(f);
      s->next = nullptr;
      depot().give(s, 1);
    }
  }
}

inline void transition(fiber* f, fiber_state from, fiber_state to) noexcept {
#if GORO_DEBUG_CHECKS
  fiber_state seen = f->state.exchange(to, std::memory_order_relaxed);  // relaxed: descriptive
  if (seen != from) GORO_FATAL("bad fiber state transition");
#else
  (void)from;
  f->state.store(to, std::memory_order_relaxed);  // relaxed: descriptive
#endif
}

}  // namespace goro::detail
