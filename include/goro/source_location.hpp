// SPDX-License-Identifier: MIT
// goro::source_location: where a fiber was spawned. goro::source_location
// cannot be used with clang 14 on libstdc++ 12 (it needs
// __builtin_source_location, which clang gained in version 15), so goro uses
// the __builtin_FILE/LINE/FUNCTION intrinsics both compilers have had for years.
#pragma once

#include <cstdint>

namespace goro {

class source_location {
 public:
  static constexpr source_location current(const char* file = __builtin_FILE(), int line = __builtin_LINE(),
                                           const char* function = __builtin_FUNCTION()) noexcept {
    source_location loc;
    loc.file_ = file;
    loc.line_ = static_cast<std::uint32_t>(line);
    loc.function_ = function;
    return loc;
  }
  constexpr source_location() noexcept = default;

  constexpr const char* file_name() const noexcept { return file_; }
  constexpr std::uint32_t line() const noexcept { return line_; }
  constexpr const char* function_name() const noexcept { return function_; }

 private:
  const char* file_ = "";
  std::uint32_t line_ = 0;
  const char* function_ = "";
};

}  // namespace goro
