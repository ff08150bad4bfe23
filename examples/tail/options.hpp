// SPDX-License-Identifier: MIT
// goro-tail's command line: what the user asked for, parsed and validated
// before the runtime starts (a bad option never gets as far as goro::run).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace tail {

struct options {
  std::vector<std::string> paths;       // literal paths or glob patterns, in argument order
  bool with_filename = false;           // -H: prefix each line with "PATH: "
  bool from_end = false;                // files present at start (and not in the state) start at their end
  std::optional<std::chrono::milliseconds> poll;  // set: poll every interval instead of inotify
  std::string state_path;               // empty: no checkpoint
  std::size_t workers = 0;              // 0: no processing stage
  std::size_t max_line = 1 << 20;       // longer lines are split into pieces of this many bytes
  bool stats = false;                   // print counters on stderr at exit
  std::chrono::milliseconds rotate_wait{5000};  // how long a rotated-away file is still read
  bool must_exist = false;              // a missing PATH at start is an error, not a warning
};

// parse_result is either options or an error message; help_requested means
// "print usage and exit 0".
struct parse_result {
  options opts;
  std::string error;  // non-empty: bad command line
  bool help_requested = false;
};

parse_result parse_options(int argc, char** argv);

// usage() is the --help text.
std::string usage(const char* program);

}  // namespace tail
