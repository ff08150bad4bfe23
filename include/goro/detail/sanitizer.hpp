// SPDX-License-Identifier: MIT
// Thin wrappers over the TSan fiber API and the ASan fiber-switch hooks. They
// compile to nothing in plain builds. Only detail/switch.hpp calls them: every
// context switch in goro goes through that one file (see FEASIBILITY notes in
// docs/scheduler.md for why each call sits where it does).
#pragma once

#include "goro/config.hpp"

#include <cstddef>

#if GORO_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if GORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace goro::detail::sanitizer {

// --- TSan: every execution context (thread stack or fiber) has a handle. ---
inline void* tsan_current() noexcept {
#if GORO_TSAN
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}
inline void* tsan_create() noexcept {
#if GORO_TSAN
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}
inline void tsan_destroy(void* handle) noexcept {
#if GORO_TSAN
  if (handle != nullptr) __tsan_destroy_fiber(handle);
#else
  (void)handle;
#endif
}
// Must be called immediately before the switch. flags = 0 (not no_sync): the
// switch itself is a synchronisation point, as it is for the scheduler.
inline void tsan_switch_to(void* handle) noexcept {
#if GORO_TSAN
  __tsan_switch_to_fiber(handle, 0);
#else
  (void)handle;
#endif
}
inline void tsan_set_name(void* handle, const char* name) noexcept {
#if GORO_TSAN
  __tsan_set_fiber_name(handle, name);
#else
  (void)handle;
  (void)name;
#endif
}

// --- ASan: start before a switch, finish right after arriving. ---
inline void asan_start_switch(void** fake_stack_save, const void* bottom, std::size_t size) noexcept {
#if GORO_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save;
  (void)bottom;
  (void)size;
#endif
}
inline void asan_finish_switch(void* fake_stack_save, const void** old_bottom, std::size_t* old_size) noexcept {
#if GORO_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
  (void)fake_stack_save;
  (void)old_bottom;
  (void)old_size;
#endif
}
// A reused stack may still carry redzone poison of its previous fiber.
inline void asan_unpoison(void* addr, std::size_t size) noexcept {
#if GORO_ASAN
  __asan_unpoison_memory_region(addr, size);
#else
  (void)addr;
  (void)size;
#endif
}

// What an execution context must remember for the sanitizers between
// switches: TSan's handles for the fiber and for whoever resumed it, ASan's
// bounds of the resumer's stack. Each part is stored only in a build with
// that sanitizer; in a plain build this is an empty class (held with
// [[no_unique_address]]), reads give null and writes vanish, so a fiber
// does not carry 32 bytes it never uses.
class context_state {
 public:
  void* tsan_fiber() const noexcept {
#if GORO_TSAN
    return tsan_fiber_;
#else
    return nullptr;
#endif
  }
  void* tsan_resumer() const noexcept {
#if GORO_TSAN
    return tsan_resumer_;
#else
    return nullptr;
#endif
  }
  void set_tsan_fiber(void* handle) noexcept {
#if GORO_TSAN
    tsan_fiber_ = handle;
#else
    (void)handle;
#endif
  }
  void set_tsan_resumer(void* handle) noexcept {
#if GORO_TSAN
    tsan_resumer_ = handle;
#else
    (void)handle;
#endif
  }
  const void* asan_resumer_bottom() const noexcept {
#if GORO_ASAN
    return asan_resumer_bottom_;
#else
    return nullptr;
#endif
  }
  std::size_t asan_resumer_size() const noexcept {
#if GORO_ASAN
    return asan_resumer_size_;
#else
    return 0;
#endif
  }
  // Where asan_finish_switch stores the resumer's bounds (null: not kept).
  const void** asan_resumer_bottom_out() noexcept {
#if GORO_ASAN
    return &asan_resumer_bottom_;
#else
    return nullptr;
#endif
  }
  std::size_t* asan_resumer_size_out() noexcept {
#if GORO_ASAN
    return &asan_resumer_size_;
#else
    return nullptr;
#endif
  }

 private:
#if GORO_TSAN
  void* tsan_fiber_ = nullptr;
  void* tsan_resumer_ = nullptr;
#endif
#if GORO_ASAN
  const void* asan_resumer_bottom_ = nullptr;
  std::size_t asan_resumer_size_ = 0;
#endif
};

}  // namespace goro::detail::sanitizer
