// SPDX-License-Identifier: MIT
// goro::run(): Go's func main plus runtime in one call.
//
//   goro::run(fn)            start the workers, run fn as the first fiber,
//   goro::run(options, fn)   return its result (or rethrow its exception),
//                            stop the workers.
#pragma once

#include "goro/detail/scheduler.hpp"
#include "goro/errors.hpp"
#include "goro/run_options.hpp"

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace goro {

// run() starts a runtime with options.workers worker threads, runs fn as its
// main fiber, and returns what fn returns once it has. Fibers still alive at
// that point are unwound (their destructors run on the calling thread, as Go
// kills goroutines when main returns); goro::testing reports them as leaks.
//
// Blocks: the calling thread, which is not a worker, until fn returns.
// Throws: whatever fn throws (rethrown here, after shutdown);
//   goro::deadlock_error when every fiber is blocked and nothing can wake one
//   (see run_options::detect_deadlock), with the fiber dump as its message;
//   goro::misuse_error when called from inside a fiber.
// Memory ordering: everything fn did happens-before run() returns.
//
// Example:
//   int answer = goro::run([] {
//     goro::wait_group wg;
//     std::atomic<int> sum{0};
//     for (int i = 1; i <= 10; ++i) {
//       wg.add(1);
//       goro::spawn([&, i] { sum += i; wg.done(); });
//     }
//     wg.wait();
//     return sum.load();
//   });
template <class Fn>
auto run(const run_options& options, Fn&& fn, source_location site = source_location::current())
    -> std::invoke_result_t<Fn&> {
  using result_t = std::invoke_result_t<Fn&>;
  if (detail::current_fiber() != nullptr)
    detail::throw_misuse<misuse_error>("goro::run() called from inside a fiber; spawn() instead");
  std::exception_ptr error;
  std::conditional_t<std::is_void_v<result_t>, bool, std::optional<result_t>> result{};
  {
    detail::scheduler sched(options);
    sched.start(site, [&] {
      try {
        if constexpr (std::is_void_v<result_t>) {
          fn();
          result = true;
        } else {
          result.emplace(fn());
        }
      } catch (boost::context::detail::forced_unwind const&) {
        throw;
      } catch (...) {
        error = std::current_exception();
      }
    });
    sched.wait_and_stop();
  }
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<result_t>) return std::move(*result);
}

template <class Fn>
auto run(Fn&& fn, source_location site = source_location::current()) -> std::invoke_result_t<Fn&> {
  return run(run_options{}, std::forward<Fn>(fn), site);
}

}  // namespace goro
