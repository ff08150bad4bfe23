// SPDX-License-Identifier: MIT
// THE one switch point. Every context switch in goro goes through the four
// functions below, which own all Boost.Context calls and carry the sanitizer
// annotations and the per-fiber C++ exception state:
//
//   prepare()  record what the fiber will run (spawner side; no stack yet)
//   create()   build the fiber context on a stack (the worker, at first run)
//   resume()   scheduler -> fiber; returns when the fiber suspends or exits
//   suspend()  fiber -> the scheduler that resumed it
//   destroy()  unwind a suspended fiber (forced unwind runs its destructors)
//
// Only the worker loop resumes fibers, and a fiber only ever suspends back to
// the worker loop that resumed it (Go's mcall to g0): there are no direct
// fiber-to-fiber switches, so every resume/suspend pair brackets one slice.
//
// Invariants:
//   * context_ is valid exactly while the fiber is suspended; resumer_ exactly
//     while it runs. Both belong to whoever is running the fiber.
//   * The resumer's TSan handle and ASan stack bounds are recorded on every
//     resume: fibers migrate, so they change (FEASIBILITY: annotation pattern).
//   * The C++ exception globals (__cxa_eh_globals: caught exceptions and the
//     uncaught count) are per thread, and Boost.Context does not switch them.
//     A fiber parked inside a catch block that resumes on another worker would
//     corrupt both threads' lists, so suspend() stores the fiber's globals and
//     clears the thread's; the arrival side restores them. The worker loop
//     runs outside any catch block, so "cleared" is its true state.
//   * After a fiber exits, its stack and the fiber object are gone (finalize
//     frees the object, Boost then the stack): resume() reports the exit and
//     the caller must not touch the fiber again.
#pragma once

#include "goro/config.hpp"
#include "goro/detail/sanitizer.hpp"
#include "goro/detail/stack_pool.hpp"

#include <atomic>
#include <boost/context/fiber.hpp>
#include <boost/context/preallocated.hpp>
#include <boost/context/stack_context.hpp>
#include <cstddef>
#include <cstring>
#include <cxxabi.h>
#include <memory>
#include <utility>

namespace goro::detail {

// libstdc++/libsupc++ layout of __cxa_eh_globals (x86_64 and aarch64 Linux).
struct eh_globals {
  void* caught_exceptions = nullptr;
  unsigned int uncaught_exceptions = 0;
};

// The address is per thread and the function is declared const, so compilers
// reuse it across a switch. noinline + the asm launder force a fresh lookup
// (FEASIBILITY: thread_local across migration).
[[gnu::noinline]] inline eh_globals* current_eh_globals() noexcept {
  auto* p = reinterpret_cast<eh_globals*>(abi::__cxa_get_globals());
  asm volatile("" : "+r"(p));
  return p;
}

class execution_context;

// Hooks a context runs on its own stack: run() is the fiber's body; finalize()
// releases everything the fiber owns except the stack (which Boost frees right
// after), and runs on the normal exit path and on forced unwind alike.
struct context_entry {
  void (*run)(void* arg);
  void (*finalize)(void* arg) noexcept;
  void* arg;
};

class execution_context {
 public:
  execution_context() = default;
  execution_context(const execution_context&) = delete;
  execution_context& operator=(const execution_context&) = delete;

  bool started() const noexcept { return started_; }
  bool created() const noexcept { return created_; }
  // Valid once created(); written by the worker that creates the context.
  const detail::stack& stack() const noexcept { return stack_; }
  // The usable stack size the fiber runs on: asked for at prepare(), and
  // the size class of stack() once created (the same value).
  std::size_t stack_size() const noexcept { return stack_.size_class; }

  // Records the fiber's entry and the stack size it asked for. The stack
  // comes later (create()): a fiber that has not run yet owns no stack, so
  // a million queued fibers cost a million small objects, not a million
  // touched stack pages. stack_size <= max_stack_size (the caller checks).
  void prepare(context_entry entry, std::size_t stack_size) noexcept {
    entry_ = entry;
    stack_.size_class = static_cast<std::uint32_t>(stack_size);
  }

  // Builds the context on s; sp is where the stack proper starts. The
  // worker about to resume the fiber for the first time.
  void create(detail::stack s, char* sp) {
    // Not size_class: prepare() set it (s has the same), and diagnostics
    // read it from other threads (stack_size()) without synchronising with us.
    stack_.base = s.base;
    stack_.slot_size = s.slot_size;
    stack_.guarded = s.guarded;
    created_ = true;
    san_.set_tsan_fiber(sanitizer::tsan_create());
    boost::context::stack_context sctx;
    sctx.sp = sp;
    sctx.size = static_cast<std::size_t>(sp - s.bottom());
    void* self = sanitizer::tsan_current();
    // The Boost constructor jumps into the new stack and straight back.
    sanitizer::tsan_switch_to(san_.tsan_fiber());
    context_ = boost::context::fiber(std::allocator_arg, boost::context::preallocated(sp, sctx.size, sctx),
                                     stack_releaser{s}, [this](boost::context::fiber&& resumer) {
                                       return entry_point(std::move(resumer));
                                     });
    sanitizer::tsan_switch_to(self);
  }

  // Scheduler side: runs the fiber until it suspends (returns true) or exits
  // (returns false; *this no longer exists). Worker thread only.
  // thread_globals is the calling thread's current_eh_globals(), which the
  // worker looks up once (a call into libstdc++'s TLS costs more than the
  // switch): the fiber runs on this thread until it suspends again.
  bool resume(eh_globals* thread_globals) noexcept {
    thread_eh_ = thread_globals;
    void* fiber_handle = san_.tsan_fiber();
    void* self = sanitizer::tsan_current();
    san_.set_tsan_resumer(self);
    void* fake_stack = nullptr;
    sanitizer::asan_start_switch(&fake_stack, stack_.bottom(), stack_.usable_size());
    sanitizer::tsan_switch_to(fiber_handle);
    boost::context::fiber next = std::move(context_).resume();
    sanitizer::asan_finish_switch(fake_stack, nullptr, nullptr);
    if (!next) {  // exited: the stack, and *this with it, is gone
      // TSan is switched back here, not by the exiting fiber: its last frames
      // (the entry lambda, Boost's fiber_entry) still return after its final
      // statement, and their exits must pop the fiber's shadow stack.
      sanitizer::tsan_switch_to(self);
      sanitizer::tsan_destroy(fiber_handle);
      return false;
    }
    context_ = std::move(next);
    static_assert(sizeof(boost::context::fiber) == sizeof(void*), "a Boost fiber is its fcontext_t");
    const void* sp;
    std::memcpy(&sp, static_cast<const void*>(&context_), sizeof sp);
    saved_sp_.store(sp, std::memory_order_relaxed);  // relaxed: read by this thread, or as a hint (resume_point)
    return true;
  }

  // Where the stack pointer was when the fiber last switched out: its
  // registers are saved there (for the canary check of unguarded stacks,
  // see stack_pool.hpp, by the worker that just resumed it).
  const void* last_sp() const noexcept { return saved_sp_.load(std::memory_order_relaxed); }

  // last_sp(), the first bytes the fiber's next resume reads, or null: a
  // hint for prefetching only, never dereferenced. A worker reads it for a
  // fiber in its queue that a thief may take and resume meanwhile, which is
  // why it is an atomic copy (resume() stores it) and not a read of
  // context_. It may be stale, or garbage if the fiber exited and its
  // object was freed or reused meanwhile: fiber objects are never unmapped
  // (fiber_depot), so the load stays in bounds, and the value is only ever
  // prefetched. Null under TSan and ASan: ASan frees fiber objects for
  // real, and TSan would call that load racy against the zeroing of a
  // reused object.
  const void* resume_point() const noexcept {
    if constexpr (tsan_enabled || asan_enabled) return nullptr;
    return saved_sp_.load(std::memory_order_relaxed);  // relaxed: a hint
  }

  // Fiber side: switches back to the scheduler that resumed this fiber and
  // returns when some scheduler resumes it again (maybe on another thread).
  // Throws boost's forced_unwind when the fiber is destroyed while suspended;
  // that exception must propagate (never swallow it).
  void suspend() {
    eh_globals* globals = thread_eh_;  // the thread that resumed us is the one we run on
    eh_ = *globals;
    *globals = eh_globals{};
    void* fake_stack = nullptr;
    arrival on_arrival{*this, fake_stack};
    sanitizer::asan_start_switch(&fake_stack, san_.asan_resumer_bottom(), san_.asan_resumer_size());
    sanitizer::tsan_switch_to(san_.tsan_resumer());
    resumer_ = std::move(resumer_).resume();
  }

  // Unwinds a suspended fiber on the calling thread: destructors on its stack
  // run here, then the stack is released. *this is gone afterwards.
  void destroy() noexcept {
    if (!created_) {  // never ran and owns no stack: only its task to release
      entry_.finalize(entry_.arg);  // *this is gone afterwards
      return;
    }
    eh_globals* globals = current_eh_globals();
    eh_globals saved = *globals;
    *globals = eh_globals{};
    thread_eh_ = globals;
    void* fiber_handle = san_.tsan_fiber();
    void* self = sanitizer::tsan_current();
    san_.set_tsan_resumer(self);
    boost::context::fiber victim = std::move(context_);
    if (!started_) {
      // Never ran: the entry point never started, so nothing on the stack
      // needs unwinding; release what the fiber owns, then let Boost free the
      // stack (its unwind runs only inside its own entry frame).
      entry_.finalize(entry_.arg);
      sanitizer::tsan_switch_to(fiber_handle);
      victim = {};
      sanitizer::tsan_switch_to(self);
    } else {
      void* fake_stack = nullptr;
      sanitizer::asan_start_switch(&fake_stack, stack_.bottom(), stack_.usable_size());
      sanitizer::tsan_switch_to(fiber_handle);
      victim = {};  // forced unwind runs the fiber's destructors, then frees its stack
      sanitizer::tsan_switch_to(self);
      sanitizer::asan_finish_switch(fake_stack, nullptr, nullptr);
    }
    sanitizer::tsan_destroy(fiber_handle);
    *current_eh_globals() = saved;
  }

 private:
  // Returns a stack to the calling worker's cache (or the shared pool) once
  // Boost has destroyed the fiber record on it.
  struct stack_releaser {
    detail::stack stack_to_release;
    void deallocate(boost::context::stack_context&) noexcept;  // defined in scheduler.hpp
  };

  // Runs when a suspended fiber is resumed (or unwound): re-learns the
  // resumer's stack bounds and restores the fiber's exception globals.
  struct arrival {
    execution_context& self;
    void*& fake_stack;
    ~arrival() {
      sanitizer::asan_finish_switch(fake_stack, self.san_.asan_resumer_bottom_out(), self.san_.asan_resumer_size_out());
      *self.thread_eh_ = self.eh_;  // thread_eh_ was set by whoever resumed (or unwinds) us
    }
  };

  boost::context::fiber entry_point(boost::context::fiber&& resumer) {
    started_ = true;
    resumer_ = std::move(resumer);
    sanitizer::asan_finish_switch(nullptr, san_.asan_resumer_bottom_out(), san_.asan_resumer_size_out());
    *thread_eh_ = eh_globals{};
    try {
      entry_.run(entry_.arg);
    } catch (boost::context::detail::forced_unwind const&) {
      leave_for_good_prepare();
      // Boost catches it in its entry frame and jumps to the destroyer.
      throw;
    }
    boost::context::fiber back = std::move(resumer_);
    leave_for_good_prepare();
    return back;
  }

  // The last steps on this stack: release the fiber (finalize may destroy
  // *this, so copy what the final switch needs first), then tell ASan we
  // leave for good. (TSan is switched back by the resumer: see resume().)
  void leave_for_good_prepare() noexcept {
    const void* bottom = san_.asan_resumer_bottom();
    std::size_t size = san_.asan_resumer_size();
    context_entry entry = entry_;
    entry.finalize(entry.arg);  // *this may be gone from here on
    sanitizer::asan_start_switch(nullptr, bottom, size);  // nullptr: this fake stack dies
  }

  boost::context::fiber context_;  // this fiber, while suspended
  boost::context::fiber resumer_;  // the worker loop that runs it, while running
  detail::stack stack_{};
  context_entry entry_{};
  [[no_unique_address]] sanitizer::context_state san_;  // empty in a plain build
  eh_globals eh_{};
  eh_globals* thread_eh_ = nullptr;  // exception globals of the thread running (or unwinding) this fiber
  std::atomic<const void*> saved_sp_{nullptr};  // written by resume() once the fiber has switched out
  bool created_ = false;
  bool started_ = false;
};

}  // namespace goro::detail
