// SPDX-License-Identifier: MIT
// Catch2 main for every goro test executable, plus the leak listener: every
// test case fails if it leaves a fiber behind (goro/testing/catch2.hpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <goro/testing/catch2.hpp>

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
