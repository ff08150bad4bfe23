// SPDX-License-Identifier: MIT
// Why a fiber is blocked: the single table of wait reasons shown by
// dump_fibers() and the metrics. Strings match Go's waitReasonStrings where
// the concept matches; each reason is unique and says what the fiber waits for.
#pragma once

#include <cstdint>
#include <string_view>

namespace goro {

enum class wait_reason : std::uint8_t {
  none,
  yield,
  sleep,
  wait_group,
  mutex_lock,
  cond_wait,
  chan_send,
  chan_receive,
  select,
  select_no_cases,
  io_wait,
  blocking_call,
  semaphore,
  context_done,
  future_get,
  count_  // number of reasons; not a reason
};

inline constexpr std::string_view to_string(wait_reason r) noexcept {
  switch (r) {
    case wait_reason::none: return "";
    case wait_reason::yield: return "yield";
    case wait_reason::sleep: return "sleep";
    case wait_reason::wait_group: return "sync.WaitGroup.Wait";
    case wait_reason::mutex_lock: return "sync.Mutex.Lock";
    case wait_reason::cond_wait: return "sync.Cond.Wait";
    case wait_reason::chan_send: return "chan send";
    case wait_reason::chan_receive: return "chan receive";
    case wait_reason::select: return "select";
    case wait_reason::select_no_cases: return "select (no cases)";
    case wait_reason::io_wait: return "IO wait";
    case wait_reason::blocking_call: return "blocking call";
    case wait_reason::semaphore: return "semaphore acquire";
    case wait_reason::context_done: return "context done";
    case wait_reason::future_get: return "future get";
    case wait_reason::count_: break;
  }
  return "?";
}

// Fiber states (Go's _Grunnable/_Grunning/_Gwaiting/_Gdead).
enum class fiber_state : std::uint8_t { runnable, running, waiting, dead };

inline constexpr std::string_view to_string(fiber_state s) noexcept {
  switch (s) {
    case fiber_state::runnable: return "runnable";
    case fiber_state::running: return "running";
    case fiber_state::waiting: return "waiting";
    case fiber_state::dead: return "dead";
  }
  return "?";
}

}  // namespace goro
