# SPDX-License-Identifier: MIT
#
# goro_set_sanitizers(<target>): maps GORO_SANITIZE ("" | "thread" |
# "address,undefined") to compile and link flags on goro's OWN targets only.
# Nothing reaches goro::goro's INTERFACE, so consumers never inherit them.
# Targets built this way also get GORO_SANITIZE_BUILD=1, so tests can shrink
# their sizes without parsing flags.
#
# goro_configure_target(<target>): goro_set_warnings + goro_set_sanitizers; what
# every test and example target calls.

include_guard(GLOBAL)
include(${CMAKE_CURRENT_LIST_DIR}/GoroWarnings.cmake)

function(goro_set_sanitizers target)
  if(GORO_SANITIZE STREQUAL "")
    return()
  endif()
  set(flags -fsanitize=${GORO_SANITIZE} -fno-omit-frame-pointer -g)
  if(GORO_SANITIZE MATCHES "undefined")
    # UBSan findings fail the test instead of printing and carrying on.
    list(APPEND flags -fno-sanitize-recover=undefined)
  endif()
  target_compile_options(${target} PRIVATE ${flags})
  target_link_options(${target} PRIVATE ${flags})
  target_compile_definitions(${target} PRIVATE GORO_SANITIZE_BUILD=1)
endfunction()

function(goro_configure_target target)
  goro_set_warnings(${target})
  goro_set_sanitizers(${target})
endfunction()
