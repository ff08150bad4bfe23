// SPDX-License-Identifier: MIT
// A Catch2 v2 listener that fails every test case that leaks a fiber
// (goro::testing::check_since after each test case). Opt-in: include this
// header in exactly one translation unit of a Catch2 test program, after
// <catch2/catch.hpp>. goro's core never includes Catch.
#pragma once

#include "goro/testing.hpp"

#include <catch2/catch.hpp>
#include <optional>

namespace goro::testing {

class catch2_leak_listener : public Catch::TestEventListenerBase {
 public:
  using Catch::TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    Catch::TestEventListenerBase::testCaseStarting(info);
    baseline_ = leak_baseline{};
  }
  // A signal killed the test case: Catch reports it from its signal handler
  // and then dies. No leak check there: it takes goro's process lock, which
  // the crashed thread may hold (a crash inside list_fibers or dump_fibers
  // deadlocked the handler until ctest's timeout), and it sleeps.
  // (Catch2 v2 does not pass fatalErrorEncountered on to listeners; the
  // fatal result reaches them as an assertion.)
  bool assertionEnded(Catch::AssertionStats const& stats) override {
    if (stats.assertionResult.getResultType() == Catch::ResultWas::FatalErrorCondition) fatal_ = true;
    return Catch::TestEventListenerBase::assertionEnded(stats);
  }
  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    if (fatal_) {
      Catch::TestEventListenerBase::testCaseEnded(stats);
      return;
    }
    try {
      check_since(baseline_.value_or(leak_baseline{}));
    } catch (const leaked_fibers_error& e) {
      // Listeners cannot fail a test through assertions; report and make the
      // process fail so ctest sees it.
      Catch::cerr() << "\nFAILED (leak check) in test case \"" << stats.testInfo.name << "\":\n"
                    << e.what() << std::endl;
      leaked_ = true;
    }
    Catch::TestEventListenerBase::testCaseEnded(stats);
  }
  void testRunEnded(Catch::TestRunStats const& stats) override {
    Catch::TestEventListenerBase::testRunEnded(stats);
    if (leaked_) {
      Catch::cerr() << "goro leak check failed: see the reports above" << std::endl;
      std::_Exit(3);
    }
  }

 private:
  std::optional<leak_baseline> baseline_;
  bool leaked_ = false;
  bool fatal_ = false;  // set from Catch's signal handler, read on its way out
};

CATCH_REGISTER_LISTENER(catch2_leak_listener)

}  // namespace goro::testing
