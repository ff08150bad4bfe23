// SPDX-License-Identifier: MIT
// goro::run_options: the runtime knobs of one goro::run() (runtime.hpp).
// Every field has a default that suits most programs; each says what it trades.
#pragma once

#include "goro/fiber_info.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <string>

namespace goro {

// panic_handler is called on the worker thread, in the dying fiber, when an
// exception escapes a fiber started with spawn(). If it returns, the fiber
// ends normally and the program goes on. The default prints the fiber, its
// spawn site, what() and every live fiber to stderr, then aborts (Go's panic).
using panic_handler = std::function<void(const fiber_info& fiber, std::exception_ptr error)>;

struct run_options {
  // Worker OS threads. 0 = std::thread::hardware_concurrency(). More workers
  // than cores only adds switching; fewer leaves cores idle.
  unsigned workers = 0;

  // Usable stack bytes of each fiber unless spawn_options says otherwise.
  // 0 = GORO_DEFAULT_STACK_SIZE (64 KiB; 256 KiB under sanitizers). Untouched
  // stack pages cost no memory, so this bounds recursion depth, not RSS.
  std::size_t stack_size = 0;

  // Throw goro::deadlock_error from run() when every fiber is blocked and
  // nothing can wake one: no timer pending, no runnable fiber, and no wake-up
  // came from a plain thread for deadlock_grace. Turn it off when plain
  // threads that the runtime cannot see may wake fibers after a long pause.
  bool detect_deadlock = true;
  std::chrono::milliseconds deadlock_grace{250};

  // See panic_handler above. Empty = the default (print and abort).
  goro::panic_handler panic_handler;

  // Name of the fiber that runs run()'s function.
  std::string main_name = "main";

  // Starvation watchdog (0 = off). Under cooperative scheduling a fiber
  // that runs this long without blocking or yielding holds its worker: a
  // monitor thread reports it on stderr while it runs (by id), and the
  // worker reports it again with its name and spawn site when it finally
  // switches out. Costs one coarse clock read per switch when on.
  std::chrono::milliseconds starvation_threshold{0};

  // Lock diagnostics (0 = off): a fiber that waits longer than this for a
  // goro::mutex is reported on stderr with the fiber holding it (the
  // go-deadlock idea). Costs a clock read per contended lock() when on.
  std::chrono::milliseconds lock_wait_threshold{0};
};

}  // namespace goro
