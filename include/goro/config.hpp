// SPDX-License-Identifier: MIT
// Compile-time knobs of goro. Each one says what it trades. Runtime knobs live
// in run_options (runtime.hpp).
#pragma once

#include <cstddef>

// Sanitizer detection: GORO_TSAN / GORO_ASAN are 1 when the translation unit is
// built with -fsanitize=thread / -fsanitize=address (g++ and clang spellings).
#if defined(__SANITIZE_THREAD__)
#define GORO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GORO_TSAN 1
#endif
#endif
#ifndef GORO_TSAN
#define GORO_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define GORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GORO_ASAN 1
#endif
#endif
#ifndef GORO_ASAN
#define GORO_ASAN 0
#endif

// GORO_DEBUG_CHECKS: internal invariant checks (state transitions, pool
// hygiene). Costs a few branches per switch. Defaults to on without NDEBUG.
#ifndef GORO_DEBUG_CHECKS
#ifdef NDEBUG
#define GORO_DEBUG_CHECKS 0
#else
#define GORO_DEBUG_CHECKS 1
#endif
#endif

// GORO_DEFAULT_STACK_SIZE: usable stack bytes of a fiber unless spawn_options
// or run_options say otherwise. Only touched pages cost memory (a parked
// shallow fiber touches one page), so a generous size is cheap. Sanitizers
// inflate frames, so their builds get four times more.
#ifndef GORO_DEFAULT_STACK_SIZE
#if GORO_TSAN || GORO_ASAN
#define GORO_DEFAULT_STACK_SIZE (256 * 1024)
#else
#define GORO_DEFAULT_STACK_SIZE (64 * 1024)
#endif
#endif

// GORO_STACK_CACHE_PER_WORKER: free stacks a worker keeps for its next spawns.
// More = fewer trips to the shared pool; each cached stack may hold dirty pages.
#ifndef GORO_STACK_CACHE_PER_WORKER
#define GORO_STACK_CACHE_PER_WORKER 64
#endif

// GORO_STACK_CACHE_SHARED: free stacks a size-class pool keeps resident
// while busy. Past twice this many, the excess goes back to the OS at once
// (madvise: a TLB flush now, a page fault at reuse). More = faster bursts of
// spawns, more memory held during them.
#ifndef GORO_STACK_CACHE_SHARED
#define GORO_STACK_CACHE_SHARED 4096
#endif

// GORO_STACK_TRIM_IDLE_MS / GORO_STACK_TRIM_FLOOR: once no stack was taken
// or returned for this long, an idle worker returns every free stack beyond
// the floor to the OS, so memory falls back after a spike without taxing
// busy spawners.
#ifndef GORO_STACK_TRIM_IDLE_MS
#define GORO_STACK_TRIM_IDLE_MS 1000
#endif
#ifndef GORO_STACK_TRIM_FLOOR
#define GORO_STACK_TRIM_FLOOR 64
#endif

// GORO_RUN_QUEUE_SIZE: slots of a worker's local run queue (power of two).
// Larger = fewer overflows to the global queue, more to steal at once.
#ifndef GORO_RUN_QUEUE_SIZE
#define GORO_RUN_QUEUE_SIZE 256
#endif

namespace goro::detail {
inline constexpr bool tsan_enabled = GORO_TSAN;
inline constexpr bool asan_enabled = GORO_ASAN;
inline constexpr bool debug_checks = GORO_DEBUG_CHECKS;
inline constexpr std::size_t default_stack_size = GORO_DEFAULT_STACK_SIZE;
static_assert((GORO_RUN_QUEUE_SIZE & (GORO_RUN_QUEUE_SIZE - 1)) == 0,
              "GORO_RUN_QUEUE_SIZE must be a power of two");
}  // namespace goro::detail
