// SPDX-License-Identifier: MIT
//
// The smallest program that uses goro through its CMake package
// (tests/package/run_consumer.cmake checks that it prints "goro <version>").
// Once the runtime exists, switch the include to <goro/goro.hpp> and do the
// print inside a tiny goro::run, e.g. goro::run([] { ... }).

#include <goro/version.hpp>

#include <cstdio>

int main() {
  std::printf("goro %s\n", GORO_VERSION_STRING);
  return 0;
}
