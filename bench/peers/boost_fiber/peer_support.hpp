// SPDX-License-Identifier: MIT
// Shared helpers of the Boost.Fiber peers (bench/peers/boost_fiber/*.cpp):
// a work_stealing scheduler over N threads, a wait_group, and /proc readings.
// Each peer prints one line per measurement: `name value unit`.
#pragma once

#include <boost/fiber/all.hpp>

#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace peer {

// run_work_stealing() runs fn() on the calling thread's main fiber while a
// Boost.Fiber work_stealing scheduler spans `threads` threads (this one plus
// threads-1 helpers that only host fibers), and returns once fn has and the
// helpers have stopped. Boost 1.74's work_stealing keeps its scheduler table
// in statics, so this can be called only once per process.
// suspend = false (Boost's default) makes idle threads spin; true makes them
// sleep on a condition variable until work arrives.
template <class Fn>
void run_work_stealing(unsigned threads, bool suspend, Fn fn) {
  boost::fibers::mutex mu;
  boost::fibers::condition_variable_any cv;
  bool done = false;
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; ++i) {
    helpers.emplace_back([&] {
      boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads, suspend);
      std::unique_lock<boost::fibers::mutex> lock(mu);
      cv.wait(lock, [&] { return done; });
    });
  }
  boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads, suspend);
  fn();
  {
    std::unique_lock<boost::fibers::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  for (auto& t : helpers) t.join();
}

// Go's sync.WaitGroup for fibers: add(n), done(), wait().
class wait_group {
 public:
  void add(long n) { count_.fetch_add(n, std::memory_order_acq_rel); }
  void done() {
    if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<boost::fibers::mutex> lock(mu_);
      cv_.notify_all();
    }
  }
  void wait() {
    std::unique_lock<boost::fibers::mutex> lock(mu_);
    cv_.wait(lock, [&] { return count_.load(std::memory_order_acquire) == 0; });
  }

 private:
  std::atomic<long> count_{0};
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable cv_;
};

// A line of /proc/self/status ("VmRSS", "VmHWM") in KiB, or -1.
inline double status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::stod(line.substr(n + 1));
  return -1;
}
// Sets VmHWM back to the current RSS (Linux >= 4.0).
inline void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}
inline void print_peak_rss(const char* name) { std::printf("%s_peak_rss %.1f MiB\n", name, status_kib("VmHWM") / 1024); }

inline double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

}  // namespace peer
