# SPDX-License-Identifier: MIT
#
# goro_set_warnings(<target>): warning flags for goro's OWN targets (tests,
# examples, benchmarks). Never applied to goro::goro or to consumers.
# No -Wpedantic: goro uses GNU extensions (inline asm, __attribute__).
# clang also gets -Wthread-safety, which checks the GORO_GUARDED_BY/GORO_REQUIRES
# annotations (include/goro/detail/tsa.hpp).

include_guard(GLOBAL)

function(goro_set_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers
    $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>)
  if(GORO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
