// SPDX-License-Identifier: MIT
// expect: SIGABRT - Abort
// A test case that dies by a signal ends its Catch2 program instead of hanging
// it: the leak listener (goro/testing/catch2.hpp) skips its check after a
// fatal error. That check takes goro's process lock, which list_fibers() and
// dump_fibers() hold while they walk: a crash inside a walk used to deadlock
// Catch's signal handler until ctest's timeout killed the program.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <goro/testing/catch2.hpp>

#include <cstdlib>
#include <mutex>

// Catch's own signal handler allocates (it builds strings), which TSan
// reports as a signal-unsafe call and halts on before Catch prints anything:
// that is Catch's business, not what this test checks. TSAN_OPTIONS from the
// environment still apply on top of these defaults.
extern "C" const char* __tsan_default_options() { return "report_signal_unsafe=0"; }

TEST_CASE("a crash while goro's process lock is held, as inside a walk of the fibers") {
  std::lock_guard lock(goro::detail::process().mu);
  std::abort();
}

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
