// SPDX-License-Identifier: MIT
// The calling fiber: yield, sleep, identity (Go's runtime.Gosched,
// time.Sleep). Each also works on a plain thread, where it does the thread
// equivalent.
//
//   goro::yield()                        goro::this_fiber::yield()
//   goro::sleep_for(d), sleep_until(t)   goro::this_fiber::sleep_for/_until
//   goro::this_fiber::id(), name()
//
// Note: fibers migrate between worker threads at every blocking call. Never
// keep a thread_local's address, or pthread_self(), across one.
#pragma once

#include "goro/detail/scheduler.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace goro {
namespace this_fiber {

// yield() lets every other runnable fiber of this worker run before the
// caller continues. On a plain thread: std::this_thread::yield().
inline void yield() { detail::yield_fiber(); }

// sleep_until() blocks the calling fiber (not its worker) until t. A parked
// worker wakes for the nearest deadline; no CPU is used meanwhile.
template <class Duration>
void sleep_until(std::chrono::time_point<std::chrono::steady_clock, Duration> t) {
  detail::sleep_until_time(std::chrono::time_point_cast<std::chrono::steady_clock::duration>(t));
}
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  if (d <= d.zero()) {
    yield();
    return;
  }
  detail::sleep_until_future(detail::deadline_after(d));
}

// id() is the calling fiber's id (unique in the process, never reused), or 0
// on a plain thread.
inline std::uint64_t id() noexcept {
  detail::fiber* f = detail::current_fiber();
  return f != nullptr ? f->id : 0;
}
// name() is the calling fiber's spawn_options::name ("" when unnamed or on a
// plain thread).
inline std::string name() {
  detail::fiber* f = detail::current_fiber();
  return f != nullptr ? f->name : std::string();
}
// in_fiber() is true when the caller runs on a goro fiber.
inline bool in_fiber() noexcept { return detail::current_fiber() != nullptr; }

}  // namespace this_fiber

using this_fiber::sleep_for;
using this_fiber::sleep_until;
using this_fiber::yield;

}  // namespace goro
