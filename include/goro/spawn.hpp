// SPDX-License-Identifier: MIT
// goro::spawn(): Go's `go f()`.
//
//   goro::spawn(fn)                                   unnamed fiber
//   goro::spawn({.name = "reader", .stack_size = n}, fn)
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/errors.hpp"

#include <cstddef>
#include "goro/source_location.hpp"
#include <string>
#include <utility>

namespace goro {

struct spawn_options {
  std::string name;            // shown by dump_fibers(), the leak checker and panics
  std::size_t stack_size = 0;  // usable bytes; 0 = the runtime's default; over 1 GiB: spawn throws std::bad_alloc
};

// spawn() starts fn() as a new fiber and returns at once. fn is moved (or
// copied) onto the new fiber's stack; its return value is ignored.
//
// Any thread: from a fiber the new fiber joins that fiber's runtime (and runs
// next on this worker when the spawner blocks); from a plain thread it joins
// the running runtime (the first one, if several run at once).
// Throws: goro::misuse_error when no runtime is running; std::bad_alloc when
//   no stack can be mapped. An exception escaping fn is a panic: see
//   run_options::panic_handler.
template <class Fn>
void spawn(spawn_options options, Fn&& fn, goro::source_location site = goro::source_location::current()) {
  detail::active_scheduler().spawn(options.name, options.stack_size, site, false, std::forward<Fn>(fn));
}

template <class Fn>
void spawn(Fn&& fn, goro::source_location site = goro::source_location::current()) {
  detail::active_scheduler().spawn(std::string(), 0, site, false, std::forward<Fn>(fn));
}

}  // namespace goro
