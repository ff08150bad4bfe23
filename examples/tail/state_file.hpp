// SPDX-License-Identifier: MIT
// The checkpoint file of goro-tail --state: for each file, where the next run
// resumes. A file is identified by device + inode, and a fingerprint (its
// first bytes) tells a reused inode from the file that was checkpointed.
//
// Format (text, versioned, validated strictly; anything else is "corrupt"):
//
//   goro-tail-state 1
//   file <dev> <ino> <offset> <fingerprint-hex or -> <path, %XX-escaped>
//   ...
//   end <number of file lines>
//
// The trailer catches a file cut short. The offset is the first byte not yet
// printed: the start of a held partial line, so the next run prints it whole.
// Saving is atomic (temporary file + fsync + rename + fsync of the directory):
// a crash leaves the old checkpoint or the new one, never a mix.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace tail {

// fingerprint_bytes: how much of a file's head identifies it.
inline constexpr std::size_t fingerprint_bytes = 64;

// file_id is what a file is, whatever its name: (device, inode).
struct file_id {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  friend auto operator<=>(const file_id&, const file_id&) = default;
};

struct checkpoint {
  std::uint64_t offset = 0;  // first byte not yet printed
  std::string fingerprint;   // the file's first min(size, fingerprint_bytes) bytes when seen
  std::string path;          // the name it was last followed by (informational)
};

using checkpoint_map = std::map<file_id, checkpoint>;

namespace detail {

inline std::string to_hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline bool from_hex(const std::string& hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

// Paths may hold spaces, newlines, anything but NUL: escape all but plain
// printable ASCII so one entry stays one line with space-free fields.
inline std::string escape_path(const std::string& path) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (c > 0x20 && c < 0x7f && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

inline bool unescape_path(const std::string& text, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return false;  // a '%' needs two hex digits after it
    int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

inline bool parse_u64(const std::string& text, std::uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    std::uint64_t next = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (next / 10 != v) return false;  // overflow
    v = next;
  }
  out = v;
  return true;
}

inline std::vector<std::string> split_spaces(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  while (start <= line.size()) {
    std::size_t end = line.find(' ', start);
    if (end == std::string::npos) end = line.size();
    fields.push_back(line.substr(start, end - start));
    start = end + 1;
  }
  return fields;
}

}  // namespace detail

inline constexpr const char* state_header = "goro-tail-state 1";

// load_state() reads a checkpoint file. A missing file (or an empty one, as
// `touch` leaves) is an empty checkpoint; anything malformed is an error
// message, and the caller must refuse to run rather than overwrite it.
// Runs before the runtime starts (plain thread), so plain blocking reads.
inline std::optional<std::string> load_state(const std::string& path, checkpoint_map& out) {
  out.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return "cannot open state file " + path + ": " + std::strerror(errno);
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      return "cannot read state file " + path + ": " + err;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (text.empty()) return std::nullopt;

  auto corrupt = [&](std::size_t line_no, const std::string& why) {
    return "state file " + path + " is corrupt (line " + std::to_string(line_no) + ": " + why +
           "); refusing to use or overwrite it";
  };
  if (text.back() != '\n') return corrupt(0, "does not end with a newline (cut short?)");
  std::vector<std::string> lines;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (lines.empty() || lines[0] != state_header) return corrupt(1, "expected header '" + std::string(state_header) + "'");
  bool ended = false;
  std::uint64_t files = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::size_t line_no = i + 1;
    if (ended) return corrupt(line_no, "text after the 'end' line");
    auto fields = detail::split_spaces(lines[i]);
    if (fields[0] == "end") {
      std::uint64_t count = 0;
      if (fields.size() != 2 || !detail::parse_u64(fields[1], count)) return corrupt(line_no, "bad 'end' line");
      if (count != files) return corrupt(line_no, "'end' counts " + fields[1] + " files, found " + std::to_string(files));
      ended = true;
      continue;
    }
    if (fields[0] != "file" || fields.size() != 6) return corrupt(line_no, "expected 'file DEV INO OFFSET FINGERPRINT PATH'");
    file_id id;
    checkpoint cp;
    if (!detail::parse_u64(fields[1], id.dev) || !detail::parse_u64(fields[2], id.ino) ||
        !detail::parse_u64(fields[3], cp.offset))
      return corrupt(line_no, "bad number");
    if (fields[4] != "-") {
      if (!detail::from_hex(fields[4], cp.fingerprint) || cp.fingerprint.empty() ||
          cp.fingerprint.size() > fingerprint_bytes)
        return corrupt(line_no, "bad fingerprint");
    }
    if (fields[5].empty() || !detail::unescape_path(fields[5], cp.path)) return corrupt(line_no, "bad path");
    if (!out.emplace(id, std::move(cp)).second) return corrupt(line_no, "file listed twice");
    ++files;
  }
  if (!ended) return corrupt(lines.size(), "no 'end' line (cut short?)");
  return std::nullopt;
}

// render_state() is the file's text for a checkpoint.
inline std::string render_state(const checkpoint_map& entries) {
  std::string text = std::string(state_header) + "\n";
  for (const auto& [id, cp] : entries) {
    text += "file " + std::to_string(id.dev) + " " + std::to_string(id.ino) + " " + std::to_string(cp.offset) + " ";
    text += cp.fingerprint.empty() ? std::string("-") : detail::to_hex(cp.fingerprint);
    text += " " + detail::escape_path(cp.path.empty() ? std::string("?") : cp.path) + "\n";
  }
  text += "end " + std::to_string(entries.size()) + "\n";
  return text;
}

// save_state() writes text to path atomically. Blocking (fsync): call it
// through goro::blocking. Returns an error message or nullopt.
inline std::optional<std::string> save_state(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot write state file " + tmp + ": " + std::strerror(errno);
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return "cannot write state file " + tmp + ": " + err;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return "cannot sync state file " + tmp + ": " + err;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot rename " + tmp + " to " + path + ": " + err;
  }
  // The rename is durable only once the directory is synced.
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return std::nullopt;
}

}  // namespace tail
