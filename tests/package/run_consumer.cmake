# SPDX-License-Identifier: MIT
#
# Driver for the package.* ctest tests (tests/CMakeLists.txt): builds and runs
# tests/consumer against goro the way a user would, and fails on any error.
#
#   cmake -DMODE=find_package|add_subdirectory
#         -DGORO_SOURCE_DIR=<goro source> -DGORO_BINARY_DIR=<goro build tree>
#         -DGORO_VERSION=<x.y.z> -DCONSUMER_SOURCE_DIR=<tests/consumer>
#         -DWORK_DIR=<scratch dir> -DINSTALL_PREFIX=<prefix for find_package mode>
#         -DGENERATOR=<generator> -DMAKE_PROGRAM=<path> -DCXX_COMPILER=<path>
#         -DBUILD_TYPE=<config> [-DEXTRA_PREFIX_PATH=<a|b|...>]
#         -P run_consumer.cmake
#
# find_package:     cmake --install GORO_BINARY_DIR into INSTALL_PREFIX, then
#                   configure the consumer with CMAKE_PREFIX_PATH=INSTALL_PREFIX.
# add_subdirectory: configure the consumer with GORO_CONSUMER_MODE=subdirectory.
# Then build it, run it, and check that it prints "goro <GORO_VERSION>".
# Only the generator, compiler and build type are passed on: never goro's
# warning or sanitizer flags.

cmake_minimum_required(VERSION 3.21)

foreach(var MODE GORO_SOURCE_DIR GORO_BINARY_DIR GORO_VERSION CONSUMER_SOURCE_DIR
            WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()

# Runs a command, echoing it; any non-zero result fails the test.
function(goro_step)
  list(JOIN ARGN " " shown)
  message(STATUS "+ ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run_consumer.cmake (${MODE}): step failed (${rc}): ${shown}")
  endif()
endfunction()

set(build_dir "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${build_dir}"
  -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

# The parent build's CMAKE_PREFIX_PATH (where it found Boost etc.) goes through
# the environment, which takes a ':'-separated list.
if(EXTRA_PREFIX_PATH)
  string(REPLACE "|" ":" extra "${EXTRA_PREFIX_PATH}")
  if("$ENV{CMAKE_PREFIX_PATH}" STREQUAL "")
    set(ENV{CMAKE_PREFIX_PATH} "${extra}")
  else()
    set(ENV{CMAKE_PREFIX_PATH} "${extra}:$ENV{CMAKE_PREFIX_PATH}")
  endif()
endif()

if(MODE STREQUAL "find_package")
  if(NOT INSTALL_PREFIX)
    message(FATAL_ERROR "run_consumer.cmake: -DINSTALL_PREFIX=... is required for find_package")
  endif()
  file(REMOVE_RECURSE "${INSTALL_PREFIX}")
  goro_step("${CMAKE_COMMAND}" --install "${GORO_BINARY_DIR}"
            --prefix "${INSTALL_PREFIX}" --config "${BUILD_TYPE}")
  list(APPEND configure_args
    "-DCMAKE_PREFIX_PATH=${INSTALL_PREFIX}"
    # Only the fresh install may satisfy find_package(goro).
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "add_subdirectory")
  list(APPEND configure_args
    -DGORO_CONSUMER_MODE=subdirectory
    "-DGORO_SOURCE_DIR=${GORO_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

goro_step("${CMAKE_COMMAND}" ${configure_args})
goro_step("${CMAKE_COMMAND}" --build "${build_dir}" --config "${BUILD_TYPE}")

# Single-config generators put the program in the build dir, multi-config ones
# in a per-config subdirectory.
set(exe "")
foreach(candidate "${build_dir}/consumer" "${build_dir}/${BUILD_TYPE}/consumer")
  if(EXISTS "${candidate}")
    set(exe "${candidate}")
    break()
  endif()
endforeach()
if(NOT exe)
  message(FATAL_ERROR "run_consumer.cmake (${MODE}): consumer executable not found under ${build_dir}")
endif()

message(STATUS "+ ${exe}")
execute_process(COMMAND "${exe}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ECHO_OUTPUT_VARIABLE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run_consumer.cmake (${MODE}): consumer exited with ${rc}")
endif()
string(REPLACE "." "\\." version_re "${GORO_VERSION}")
if(NOT out MATCHES "goro ${version_re}")
  message(FATAL_ERROR "run_consumer.cmake (${MODE}): expected 'goro ${GORO_VERSION}' in the consumer's output")
endif()
message(STATUS "package ${MODE}: OK")
