// SPDX-License-Identifier: MIT
// goro::fiber_info: a snapshot of one live fiber, as listed by list_fibers()
// and printed by dump_fibers() (diagnostics.hpp), and handed to a panic
// handler (run_options.hpp).
#pragma once

#include "goro/wait_reason.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace goro {

struct fiber_info {
  std::uint64_t id = 0;             // unique for the life of the process; 1-based
  std::string name;                 // spawn_options::name ("" when unnamed)
  std::string file;                 // spawn site: where spawn() was called
  std::uint32_t line = 0;
  std::string function;
  fiber_state state = fiber_state::runnable;
  wait_reason reason = wait_reason::none;      // why it is blocked (state == waiting)
  std::chrono::nanoseconds waiting_for{0};     // how long it has been blocked (coarse clock)
  std::size_t stack_size = 0;                  // usable bytes
  bool guarded = false;                        // stack has a guard page (else: canary only)
  bool is_main = false;                        // the fiber run() started
};

}  // namespace goro
