// SPDX-License-Identifier: MIT
// goro-tail's command-line parser. Strict on purpose: a typo in a number or
// an unknown option is an error with a message, never a silent default.
#include "options.hpp"

#include <cerrno>
#include <cstdlib>
#include <limits>

namespace tail {

namespace {

// parse_unsigned() accepts only a plain decimal number in [min, max].
bool parse_unsigned(const std::string& text, unsigned long long min, unsigned long long max,
                    unsigned long long& out) {
  if (text.empty() || text.size() > 19) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0 || v < min || v > max) return false;
  out = v;
  return true;
}

}  // namespace

std::string usage(const char* program) {
  std::string p = program != nullptr ? program : "goro-tail";
  return "usage: " + p + " [options] PATH...\n"
         "Follow files by name (like tail -F) and print each complete line once.\n"
         "A PATH may be a glob; files that start matching later are picked up.\n"
         "\n"
         "  -H, --with-filename   prefix each line with 'PATH: '\n"
         "      --from-end        start files present at startup at their end\n"
         "      --poll MS         poll every MS milliseconds instead of inotify\n"
         "      --state FILE      checkpoint offsets in FILE; a restart resumes there\n"
         "      --workers N       pass lines through a pool of N workers\n"
         "      --max-line BYTES  split lines longer than BYTES (default 1048576)\n"
         "      --stats           print counters on stderr at exit\n"
         "      --rotate-wait S   keep reading a rotated file for S seconds (default 5)\n"
         "      --must-exist      a missing PATH is an error instead of a warning\n"
         "  -h, --help            this text\n";
}

parse_result parse_options(int argc, char** argv) {
  parse_result r;
  options& o = r.opts;
  bool only_paths = false;  // after "--"
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_paths || arg.empty() || arg[0] != '-' || arg == "-") {
      if (arg == "-") {
        r.error = "reading standard input is not supported: give file paths";
        return r;
      }
      o.paths.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_paths = true;
      continue;
    }
    // "--name=value" and "--name value" both work for options with a value.
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    auto flag = [&](const char* long_name) {
      if (name != long_name) return false;
      if (inline_value) r.error = std::string("option ") + long_name + " takes no value";
      return true;
    };
    auto value = [&](std::string& out) {
      if (inline_value) {
        out = *inline_value;
        return true;
      }
      if (i + 1 >= argc) {
        r.error = "option " + name + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    unsigned long long n = 0;
    if (name == "-h" || flag("--help")) {
      if (!r.error.empty()) return r;
      r.help_requested = true;
      return r;
    } else if (name == "-H" || flag("--with-filename")) {
      o.with_filename = true;
    } else if (flag("--from-end")) {
      o.from_end = true;
    } else if (flag("--stats")) {
      o.stats = true;
    } else if (flag("--must-exist")) {
      o.must_exist = true;
    } else if (name == "--poll") {
      if (!value(v)) return r;
      if (!parse_unsigned(v, 1, 3600ULL * 1000, n)) {
        r.error = "--poll: '" + v + "' is not a number of milliseconds in [1, 3600000]";
        return r;
      }
      o.poll = std::chrono::milliseconds(n);
    } else if (name == "--state") {
      if (!value(v)) return r;
      if (v.empty()) {
        r.error = "--state: empty file name";
        return r;
      }
      o.state_path = v;
    } else if (name == "--workers") {
      if (!value(v)) return r;
      if (!parse_unsigned(v, 1, 1024, n)) {
        r.error = "--workers: '" + v + "' is not a number in [1, 1024]";
        return r;
      }
      o.workers = static_cast<std::size_t>(n);
    } else if (name == "--max-line") {
      if (!value(v)) return r;
      if (!parse_unsigned(v, 1, 1ULL << 30, n)) {
        r.error = "--max-line: '" + v + "' is not a byte count in [1, 1073741824]";
        return r;
      }
      o.max_line = static_cast<std::size_t>(n);
    } else if (name == "--rotate-wait") {
      if (!value(v)) return r;
      if (!parse_unsigned(v, 0, 24ULL * 3600, n)) {
        r.error = "--rotate-wait: '" + v + "' is not a number of seconds in [0, 86400]";
        return r;
      }
      o.rotate_wait = std::chrono::seconds(n);
    } else {
      r.error = "unknown option '" + arg + "'";
      return r;
    }
    if (!r.error.empty()) return r;
  }
  if (o.paths.empty()) r.error = "no PATH given";
  return r;
}

}  // namespace tail
