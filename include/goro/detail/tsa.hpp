// SPDX-License-Identifier: MIT
// Clang thread-safety-analysis attributes with the GORO_ prefix. No-ops on
// other compilers. Used on goro's internal locks so -Wthread-safety checks
// "which lock guards what" where clang can see it.
#pragma once

#if defined(__clang__)
#define GORO_TSA(x) __attribute__((x))
#else
#define GORO_TSA(x)
#endif

#define GORO_CAPABILITY(x) GORO_TSA(capability(x))
#define GORO_SCOPED_CAPABILITY GORO_TSA(scoped_lockable)
#define GORO_GUARDED_BY(x) GORO_TSA(guarded_by(x))
#define GORO_REQUIRES(...) GORO_TSA(requires_capability(__VA_ARGS__))
#define GORO_EXCLUDES(...) GORO_TSA(locks_excluded(__VA_ARGS__))
#define GORO_ACQUIRE(...) GORO_TSA(acquire_capability(__VA_ARGS__))
#define GORO_RELEASE(...) GORO_TSA(release_capability(__VA_ARGS__))
#define GORO_TRY_ACQUIRE(...) GORO_TSA(try_acquire_capability(__VA_ARGS__))
#define GORO_NO_TSA GORO_TSA(no_thread_safety_analysis)
