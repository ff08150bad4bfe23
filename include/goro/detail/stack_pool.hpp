// SPDX-License-Identifier: MIT
// Fiber stacks: carved from large mmap'd slabs, pooled per size class, with a
// guard page while the mapping budget allows and a canary zone always.
//
// Layout of one stack slot in a slab: [guard page][usable stack ... top].
//
// Guard pages, two ways:
//   * Linux >= 6.13: a guard region (madvise MADV_GUARD_INSTALL) marks the
//     page in the page tables. It costs no VMA, so every stack gets one (no
//     budget; GORO_GUARD_PAGE_BUDGET still caps it when set), and it is
//     cheaper to install than an mprotect (measured 1.4 vs 3-9 us per stack;
//     mprotect grows with the VMA count). It survives MADV_DONTNEED, so a
//     released slot keeps its guard. A fault in it is a SIGSEGV at an address
//     inside the page, exactly like PROT_NONE.
//   * Older kernels: mprotect(PROT_NONE), which splits a mapping into two
//     VMAs, and Linux caps a process at vm.max_map_count (65530 by default),
//     so guarded stacks top out near 32,000 while goro must hold 1,000,000
//     live fibers. Hence the budget below.
// Policy:
//   * up to guard_budget() stacks get a guard page (unlimited with guard
//     regions; else about 3/8 of max_map_count, leaving room for the
//     program's own mappings); a fault in it is reported by the SIGSEGV
//     handler with the fiber's identity;
//   * beyond that, the guard page is just an untouched gap, and overflow is
//     caught by the canary zone: the lowest canary_bytes of the usable stack
//     must stay zero. It is checked when the fiber switches out with its
//     stack in the bottom quarter, and at exit if it ever did
//     (detail/scheduler.hpp): a shallow fiber never touches its bottom page,
//     not even to read it (that read would cost a page fault per fiber). An
//     unguarded overflow is therefore caught at the next switch near the
//     bottom, not at the faulting access, and one of more than the gap page
//     may already have hit the slot below: keep deep recursion within the
//     guard budget, or raise the stack size.
//
// Why slabs: one mmap per stack costs a syscall, and unmapping one costs a TLB
// shootdown across every worker; spawning a burst of fibers paid ~15 us each.
// Slabs of 64 stacks are carved from reservations of 256 MiB of address
// space (one mmap each, see reserve()) and never unmapped.
// Memory still falls back after a spike: free stacks beyond the caches get
// madvise(MADV_DONTNEED), which returns their pages to the OS: at once past
// a high-water mark, and after a second without stack traffic down to a
// small floor (trim_if_idle, called by workers going idle). Releasing more
// eagerly costs a page fault at every reuse (~2-3 us in a VM): it made spawn
// four times slower than Go's. The high-water mark follows demand: it is at
// least the most stacks in use at once during the last one to two seconds
// (GORO_STACK_TRIM_IDLE_MS windows), so the stacks of a burst that is still
// draining are kept for the next burst instead of being released one
// exit at a time while the process is at its busiest (100k sleepers: 8% of
// the time went to those releases, more to faulting pages back in), and
// are released once demand has stayed lower for a window or two.
//
// Invariants:
//   * stack_cache is owned by one worker and touched only on its thread.
//   * size_class_pool's lists are guarded by its mu_.
//   * A stack in any cache or list holds no live frames and has a zero canary
//     zone (a stack whose canary was hit is never reused: GORO_FATAL).
#pragma once

#include "goro/config.hpp"
#include "goro/detail/sanitizer.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

namespace goro::detail {

inline constexpr std::size_t canary_bytes = 64;

inline std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

// The largest usable stack size (Go's limit too): a fiber that needs more
// is a bug. It keeps a stack's sizes in 31 bits and the stack 16 bytes
// (every fiber carries one).
inline constexpr std::size_t max_stack_size = std::size_t{1} << 30;

struct stack {
  char* base = nullptr;  // start of the slot: the guard page (a guard region or PROT_NONE only when guarded)
  std::uint32_t slot_size : 31 = 0;  // guard page + usable: at most 1 GiB + a page
  bool guarded : 1 = false;
  // The usable size asked for; pools match on it. A word of its own: a
  // fiber's stack records it before the stack is taken, and diagnostics
  // read it from other threads while the worker fills in the rest.
  std::uint32_t size_class = 0;

  char* bottom() const noexcept { return base + page_size(); }  // lowest usable byte: the canary zone
  char* top() const noexcept { return base + slot_size; }
  std::size_t usable_size() const noexcept { return slot_size - page_size(); }
  // A guarded stack relies on its guard page (reading its canary zone would
  // cost a page fault per fiber for nothing), so only unguarded ones check.
  bool near_bottom(const void* sp) const noexcept {
    return static_cast<const char*>(sp) < bottom() + usable_size() / 4;
  }
  bool canary_intact() const noexcept {
    if (guarded) return true;
    const volatile std::uint64_t* zone = reinterpret_cast<const volatile std::uint64_t*>(bottom());
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < canary_bytes / sizeof(std::uint64_t); ++i) bits |= zone[i];
    return bits == 0;
  }
  // Is addr inside the guard page?
  bool in_guard(const void* addr) const noexcept {
    auto a = reinterpret_cast<std::uintptr_t>(addr);
    auto lo = reinterpret_cast<std::uintptr_t>(base);
    return guarded && a >= lo && a < lo + page_size();
  }
  explicit operator bool() const noexcept { return base != nullptr; }
};
static_assert(sizeof(void*) != 8 || sizeof(stack) == 16, "stack grew: every fiber carries one");

struct stack_stats {
  std::atomic<long> slots{0};    // stack slots carved so far (live or free)
  std::atomic<long> guarded{0};  // slots with a guard page
  std::atomic<long> released{0}; // free slots whose pages went back to the OS
};
inline stack_stats& stack_statistics() noexcept {
  static stack_stats stats;
  return stats;
}

// MADV_GUARD_INSTALL (Linux 6.13; older headers lack the constant).
inline constexpr int madv_guard_install = 102;

// Whether this kernel has guard regions: probed once on a scratch page.
inline bool guard_regions_supported() noexcept {
  static const bool supported = [] {
    const std::size_t ps = page_size();
    void* p = ::mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    bool ok = ::madvise(p, ps, madv_guard_install) == 0;
    ::munmap(p, ps);
    return ok;
  }();
  return supported;
}

// Budget for guard pages. The environment variable GORO_GUARD_PAGE_BUDGET
// sets it (0 = canary only, e.g. to test the canary path or to save
// mappings); else it is unlimited with guard regions (they cost no mapping),
// and otherwise a share of /proc/sys/vm/max_map_count, read once.
inline long guard_budget() noexcept {
  static const long budget = [] {
    if (const char* env = std::getenv("GORO_GUARD_PAGE_BUDGET")) return std::max(0L, std::atol(env));
    if (guard_regions_supported()) return LONG_MAX;
    long max_map = 65530;
    std::ifstream in("/proc/sys/vm/max_map_count");
    if (in) in >> max_map;
    // Sanitizers map per-fiber state of their own (TSan: a shadow stack per
    // fiber), so they get a smaller share of the mapping budget.
    return std::max(0L, (tsan_enabled || asan_enabled) ? max_map / 16 : max_map * 3 / 8);
  }();
  return budget;
}

// All stacks of one usable size. Process-wide; any thread.
class size_class_pool {
 public:
  static constexpr std::size_t slab_stacks = 64;

  explicit size_class_pool(std::size_t usable) : size_class_(usable) {
    std::size_t ps = page_size();
    usable_ = (std::max(usable, 4 * ps) + ps - 1) / ps * ps;
    if (usable > max_stack_size) throw std::bad_alloc();  // stack's sizes are 31 bits
  }
  std::size_t size_class() const noexcept { return size_class_; }

  // Stores `want` free stacks (want >= 1) at out[0..want) (maps a slab when
  // the pool runs dry). Throws std::bad_alloc when the kernel refuses.
  void take(stack* out, std::size_t want) {
    const std::int64_t now = touch();
    std::unique_lock lock(mu_);
    // Map first: a refusal then loses nothing already taken. The slab's
    // guard regions go in outside mu_ (a syscall of ~15 us): another
    // worker that needs stacks meanwhile carves its own slab instead of
    // sleeping on the lock.
    while (dirty_.size() + clean_.size() < want) {
      char* base = reserve(slab_bytes());
      lock.unlock();
      stack slab[slab_stacks];
      carve_slab(base, slab);
      lock.lock();
      clean_.insert(clean_.end(), slab, slab + slab_stacks);  // may throw: the slab's address space leaks
      if (dirty_.capacity() < high_water + 1) dirty_.reserve(high_water + 1);
    }
    in_use_ += want;
    while (want > 0 && !dirty_.empty()) {
      *out++ = dirty_.back();
      dirty_.pop_back();
      --want;
    }
    while (want > 0 && !clean_.empty()) {
      *out++ = clean_.back();
      clean_.pop_back();
      stack_statistics().released.fetch_sub(1, std::memory_order_relaxed);  // relaxed: statistic
      --want;
    }
    dirty_size_.store(dirty_.size(), std::memory_order_relaxed);  // relaxed: a hint for trim_deadline_ns
    note_demand(now);
  }

  // When trim_if_idle() would release something: never (no_trim) while the
  // resident free stacks are within the floor.
  static constexpr std::int64_t no_trim = INT64_MAX;
  std::int64_t trim_deadline_ns() const noexcept {
    if (dirty_size_.load(std::memory_order_relaxed) <= GORO_STACK_TRIM_FLOOR) return no_trim;
    return last_activity_ns_.load(std::memory_order_relaxed) + GORO_STACK_TRIM_IDLE_MS * 1'000'000LL;
  }
  // Returns free stacks beyond the floor to the OS if the pool has been idle
  // long enough. Any thread; cheap when there is nothing to do.
  void trim_if_idle(std::int64_t now_ns) {
    if (now_ns < trim_deadline_ns()) return;
    std::vector<stack> excess;
    {
      std::lock_guard lock(mu_);
      if (dirty_.size() <= GORO_STACK_TRIM_FLOOR) return;
      excess.assign(dirty_.begin() + GORO_STACK_TRIM_FLOOR, dirty_.end());
      dirty_.resize(GORO_STACK_TRIM_FLOOR);
      dirty_size_.store(dirty_.size(), std::memory_order_relaxed);
      // Idle: the last burst's demand no longer counts.
      peak_in_use_ = in_use_;
      previous_peak_ = 0;
    }
    release(excess);
    std::lock_guard lock(mu_);
    clean_.insert(clean_.end(), excess.begin(), excess.end());
  }

  static std::int64_t monotonic_coarse_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }

  // Takes back a free stack. When the dirty list passes its high-water mark
  // (high_water, or the recent peak demand if higher), a batch of
  // (high_water - low_water) free stacks goes back to the OS: sorted by
  // address, so the freed slots of a slab merge into one madvise.
  void give(stack s) noexcept { give(&s, 1); }

  // Takes back n free stacks under one lock (a worker cache hands back half
  // of itself at a time: when many fibers exit at once, one lock per stack
  // had both workers queueing on mu_, and a mass wake-up of 100k sleepers
  // ran slower on two workers than on one).
  void give(const stack* stacks, std::size_t n) noexcept {
    const std::int64_t now = touch();
    std::vector<stack> excess;
    {
      std::lock_guard lock(mu_);
      in_use_ -= n;
      note_demand(now);
      if (dirty_.size() + n > dirty_.capacity()) {
        try {
          dirty_.reserve(2 * dirty_.size() + n + 64);
        } catch (...) {
          return;  // no memory for the list: leak these slots' address space, keep the invariant
        }
      }
      dirty_.insert(dirty_.end(), stacks, stacks + n);  // capacity reserved above: never throws
      dirty_size_.store(dirty_.size(), std::memory_order_relaxed);
      const std::size_t limit = std::max(high_water, std::max(peak_in_use_, previous_peak_));
      if (dirty_.size() <= limit) return;
      // One batch of (high_water - low_water) stacks per give(): when the
      // limit falls after a large burst, the excess goes back over the
      // following gives (or at the idle trim), not in one long stall of the
      // worker whose fiber happens to exit first. dirty_ > limit >=
      // high_water, so at least low_water stay.
      const std::size_t keep = dirty_.size() - (high_water - low_water);
      try {
        excess.assign(dirty_.begin() + static_cast<std::ptrdiff_t>(keep), dirty_.end());
      } catch (...) {
        dirty_.resize(dirty_.size() - n);  // no memory to batch: leak these slots' address space, keep the invariant
        return;
      }
      dirty_.resize(keep);
      dirty_size_.store(dirty_.size(), std::memory_order_relaxed);
    }
    release(excess);
    std::lock_guard lock(mu_);
    try {
      clean_.insert(clean_.end(), excess.begin(), excess.end());
    } catch (...) {
      // Out of memory for the list itself: the (empty) slots' address space leaks.
    }
  }

  static constexpr std::size_t high_water = GORO_STACK_CACHE_SHARED * 2;
  static constexpr std::size_t low_water = GORO_STACK_CACHE_SHARED;

 private:
  // process_madvise(Advice) on our own ranges, in one call. True when every
  // range was advised; false when the kernel has no PIDFD_SELF (before 6.15:
  // EBADF, or EINVAL), refused, or stopped part way (the caller then
  // advises range by range). After one refusal that advice is not batched
  // again (one flag per advice: a kernel may batch one and not another).
  template <int Advice>
  static bool advise_self(iovec* ranges, std::size_t n) noexcept {
    constexpr int pidfd_self = -10000;  // PIDFD_SELF_THREAD (Linux 6.15): this thread's mm
    static std::atomic<bool> supported{true};
    if (!supported.load(std::memory_order_relaxed)) return false;  // relaxed: a hint; the fallback is always correct
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < n; ++i) bytes += ranges[i].iov_len;
    long done = ::syscall(SYS_process_madvise, pidfd_self, ranges, n, Advice, 0);
    if (done < 0) supported.store(false, std::memory_order_relaxed);
    return done >= 0 && static_cast<std::size_t>(done) == bytes;
  }

  static void release(std::vector<stack>& stacks) noexcept {
    std::sort(stacks.begin(), stacks.end(), [](const stack& a, const stack& b) { return a.base < b.base; });
    // Freed stacks are rarely adjacent (fibers exit in any order), so this is
    // about one range per stack. One madvise each costs a syscall and a TLB
    // shootdown each; process_madvise on ourselves takes up to 1024 ranges
    // per call and (Linux >= 6.16) flushes the TLB once per call. Kernels
    // without it (no PIDFD_SELF: EBADF, or EINVAL) get one madvise per range.
    constexpr std::size_t max_iov = 1024;  // UIO_MAXIOV
    iovec iov[64];
    std::size_t n = 0;
    auto flush = [&]() noexcept {
      if (n == 0) return;
      if (!advise_self<MADV_DONTNEED>(iov, n)) {
        for (std::size_t k = 0; k < n; ++k) ::madvise(iov[k].iov_base, iov[k].iov_len, MADV_DONTNEED);
      }
      n = 0;
    };
    static_assert(sizeof iov / sizeof iov[0] <= max_iov);
    std::size_t i = 0;
    while (i < stacks.size()) {
      // A run of adjacent slots: release from the first usable byte to the
      // last slot's top (guard pages in between are untouched: PROT_NONE, or
      // guard regions, which MADV_DONTNEED leaves in place).
      std::size_t j = i + 1;
      while (j < stacks.size() && stacks[j].base == stacks[j - 1].top()) ++j;
      iov[n].iov_base = stacks[i].bottom();
      iov[n].iov_len = static_cast<std::size_t>(stacks[j - 1].top() - stacks[i].bottom());
      if (++n == sizeof iov / sizeof iov[0]) flush();
      i = j;
    }
    flush();
    stack_statistics().released.fetch_add(static_cast<long>(stacks.size()), std::memory_order_relaxed);  // relaxed: statistic
  }

  std::size_t slab_bytes() const noexcept { return (usable_ + page_size()) * slab_stacks; }

  // Lays out the never-touched stacks of the slab at base in out[] and
  // installs their guard pages. Any thread, without mu_: the slab is not
  // in any list yet.
  void carve_slab(char* base, stack (&out)[slab_stacks]) const noexcept {
    const std::size_t ps = page_size();
    const std::size_t slot = usable_ + ps;
    stack_statistics().slots.fetch_add(slab_stacks, std::memory_order_relaxed);  // relaxed: statistic
    const bool regions = guard_regions_supported();
    iovec guards[slab_stacks];  // guard regions to install, in one call
    std::size_t n_guards = 0;
    for (std::size_t i = 0; i < slab_stacks; ++i) {
      stack& s = out[i];
      s = stack{base + i * slot, static_cast<std::uint32_t>(slot), false, static_cast<std::uint32_t>(size_class_)};
      if (stack_statistics().guarded.fetch_add(1, std::memory_order_relaxed) >= guard_budget()) {  // relaxed: a budget
        stack_statistics().guarded.fetch_sub(1, std::memory_order_relaxed);
      } else if (regions) {
        guards[n_guards++] = iovec{s.base, ps};
        s.guarded = true;
      } else if (::mprotect(s.base, ps, PROT_NONE) == 0) {
        s.guarded = true;
      } else {
        stack_statistics().guarded.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    // One process_madvise for the slab's guard regions: 0.85 instead of 1.3
    // us per stack here, and a cold burst of fibers carves a slab per 64 of
    // them. Refused (older kernels: no PIDFD_SELF) or cut short: one madvise
    // per stack (installing a guard region twice is harmless).
    if (n_guards > 0 && !advise_self<madv_guard_install>(guards, n_guards)) {
      for (stack& s : out) {
        if (s.guarded && ::madvise(s.base, ps, madv_guard_install) != 0) {
          s.guarded = false;
          stack_statistics().guarded.fetch_sub(1, std::memory_order_relaxed);
        }
      }
    }
    // Not yet used: as good as released.
    stack_statistics().released.fetch_add(static_cast<long>(slab_stacks), std::memory_order_relaxed);  // relaxed: statistic
  }

  // Address space for one slab, from a reservation of many (guarded by
  // mu_). One mmap per slab was slower: the kernel merges each new mapping
  // into the one before it, and extending that VMA waits for every page
  // fault in progress there, so a burst of first runs on two workers had
  // one stalled behind the other's mmap (cold 100k sleepers: 1.6 of 2
  // cores busy). A reservation is address space only (MAP_NORESERVE, never
  // touched) and is never unmapped, like the slabs; the tail of one too
  // short for the next slab is left unused.
  char* reserve(std::size_t bytes) {
    if (static_cast<std::size_t>(reserve_end_ - reserve_next_) < bytes) {
      const std::size_t size = std::max(bytes, reservation_bytes / bytes * bytes);
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      reserve_next_ = static_cast<char*>(p);
      reserve_end_ = reserve_next_ + size;
    }
    char* slab = reserve_next_;
    reserve_next_ += bytes;
    return slab;
  }
  static constexpr std::size_t reservation_bytes = std::size_t{256} << 20;

  // Records stack traffic (coarse clock; relaxed: a hint for trimming).
  std::int64_t touch() noexcept {
    std::int64_t now = monotonic_coarse_ns();
    if (last_activity_ns_.load(std::memory_order_relaxed) != now) last_activity_ns_.store(now, std::memory_order_relaxed);
    return now;
  }

  // Tracks the peak of in_use_ per window of GORO_STACK_TRIM_IDLE_MS; the
  // high-water mark in give() is the peak of this window and the last.
  void note_demand(std::int64_t now) noexcept {
    if (now - window_start_ns_ >= GORO_STACK_TRIM_IDLE_MS * 1'000'000LL) {
      previous_peak_ = peak_in_use_;
      peak_in_use_ = in_use_;
      window_start_ns_ = now;
    }
    peak_in_use_ = std::max(peak_in_use_, in_use_);
  }

  const std::size_t size_class_;
  std::size_t usable_;
  std::atomic<std::size_t> dirty_size_{0};
  std::atomic<std::int64_t> last_activity_ns_{0};
  std::mutex mu_;
  std::vector<stack> dirty_;  // guarded by mu_: recently used, pages still resident
  std::size_t in_use_ = 0;          // guarded by mu_: taken and not given back (in worker caches or fibers)
  std::size_t peak_in_use_ = 0;     // guarded by mu_: most in use at once in this window
  std::size_t previous_peak_ = 0;   // guarded by mu_: the same for the window before
  std::int64_t window_start_ns_ = 0;  // guarded by mu_: coarse monotonic clock
  std::vector<stack> clean_;  // guarded by mu_: pages returned to the OS
  char* reserve_next_ = nullptr;  // guarded by mu_: the unused part of the current reservation
  char* reserve_end_ = nullptr;   // guarded by mu_
};

// The pools, one per size class ever used (few in practice). Pools are never
// destroyed: stacks may be released by fibers unwound at static destruction.
inline size_class_pool& pool_for(std::size_t usable) {
  static std::mutex mu;
  static std::vector<size_class_pool*>* pools = new std::vector<size_class_pool*>();
  std::lock_guard lock(mu);
  for (size_class_pool* p : *pools)
    if (p->size_class() == usable) return *p;
  pools->push_back(new size_class_pool(usable));
  return *pools->back();
}

// Per-worker cache in front of the size-class pool of the runtime's default
// stack size. Owner thread only.
class stack_cache {
  static_assert(GORO_STACK_CACHE_PER_WORKER >= 2, "a worker's cache refills and empties by halves");

 public:
  explicit stack_cache(std::size_t stack_size) : pool_(pool_for(stack_size)) {}
  stack_cache(const stack_cache&) = delete;
  stack_cache& operator=(const stack_cache&) = delete;
  ~stack_cache() { flush(); }

  std::size_t stack_size() const noexcept { return pool_.size_class(); }
  size_class_pool& pool() noexcept { return pool_; }

  stack take() {
    if (count_ == 0) {
      pool_.take(free_, GORO_STACK_CACHE_PER_WORKER / 2);
      count_ = GORO_STACK_CACHE_PER_WORKER / 2;
    }
    stack s = free_[--count_];
    sanitizer::asan_unpoison(s.bottom(), s.usable_size());
    return s;
  }
  // The stack take() would return next, or an empty one. A prefetch hint.
  stack peek() const noexcept { return count_ > 0 ? free_[count_ - 1] : stack{}; }
  // Inline stores, not vector::push_back: that call took s by reference, so
  // its two register halves were stored and at once loaded back as one 16-byte
  // word, a load that cannot be forwarded from two stores and waits for them
  // to commit (perf: 80% of push_back's samples, 5% of spawn+join).
  void give(stack s) noexcept {
    if (count_ == GORO_STACK_CACHE_PER_WORKER) {  // full: the older half goes back in one batch
      constexpr std::size_t half = GORO_STACK_CACHE_PER_WORKER / 2;
      pool_.give(free_, half);
      std::copy(free_ + half, free_ + count_, free_);
      count_ -= half;
    }
    free_[count_++] = s;
  }
  void flush() noexcept {
    if (count_ > 0) pool_.give(free_, count_);
    count_ = 0;
  }

 private:
  size_class_pool& pool_;
  std::size_t count_ = 0;
  stack free_[GORO_STACK_CACHE_PER_WORKER];
};

// A stack from the size-class pool, for spawns that cannot use a worker cache.
inline stack take_stack(std::size_t usable) {
  stack one;
  pool_for(usable).take(&one, 1);
  sanitizer::asan_unpoison(one.bottom(), one.usable_size());
  return one;
}
inline void give_stack(stack s) noexcept { pool_for(s.size_class).give(s); }

}  // namespace goro::detail
