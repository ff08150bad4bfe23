// SPDX-License-Identifier: MIT
// Shared helpers of goro's benchmarks (STYLE 3.8): run a benchmark body inside
// goro::run with N workers, the worker-count sweep, and process-wide readings
// (resident memory from /proc/self/status, CPU time from getrusage).
//
//   BENCHMARK(BM_x)->Apply(goro_bench::sweep_workers);          arg "workers"
//   BENCHMARK(BM_y)->Apply([](auto* b) { goro_bench::sweep_tasks_workers(b, 1'000'000); });
//   void BM_x(benchmark::State& state) {
//     goro_bench::run_in_goro(state, state.range(0), [&] { for (auto _ : state) ...; });
//   }
//
// Timing: the `for (auto _ : state)` loop runs inside the main fiber, which
// may migrate between workers, so benchmarks using it should say
// ->UseRealTime() (wall time) and ->MeasureProcessCPUTime() (CPU time of all
// workers, not of whichever thread the loop happened to start on).
#pragma once

#include <benchmark/benchmark.h>
#include <goro/goro.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace goro_bench {

// ---------------------------------------------------------------------------
// Worker counts.

// worker_counts(): 1, 2, then 4, 8, ... up to hardware_concurrency(), and
// hardware_concurrency() itself when it is larger and not a power of two.
inline std::vector<std::int64_t> worker_counts() {
  const auto hw = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::int64_t> counts{1, 2};
  for (std::int64_t w = 4; w <= hw; w *= 2) counts.push_back(w);
  if (hw > counts.back()) counts.push_back(hw);
  return counts;
}

// For ->Apply(): one benchmark instance per worker count, arg "workers".
inline void sweep_workers(benchmark::internal::Benchmark* b) {
  b->ArgName("workers");
  for (std::int64_t w : worker_counts()) b->Arg(w);
}

// For ->Apply() through a lambda: args {tasks, workers} for each worker count.
inline void sweep_tasks_workers(benchmark::internal::Benchmark* b, std::int64_t tasks,
                                const char* tasks_name = "tasks") {
  b->ArgNames({tasks_name, "workers"});
  for (std::int64_t w : worker_counts()) b->Args({tasks, w});
}

// run_in_goro() runs body() as the main fiber of a fresh goro::run with
// `workers` worker threads (the marl_bench.h pattern: the benchmark's state
// loop lives inside the runtime). An exception from body (or a
// goro::deadlock_error) becomes a skipped benchmark with its message, so one
// broken workload does not take down the whole binary.
template <class Body>
void run_in_goro(benchmark::State& state, std::int64_t workers, Body&& body) {
  goro::run_options options;
  options.workers = static_cast<unsigned>(workers);
  try {
    goro::run(options, [&] { body(); });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---------------------------------------------------------------------------
// Process readings (Linux).

// status_kib("VmRSS") is that line of /proc/self/status in KiB, or -1.
inline long status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t key_len = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, key_len, key) == 0 && line.size() > key_len && line[key_len] == ':')
      return std::stol(line.substr(key_len + 1));  // "VmRSS:\t   1234 kB"
  }
  return -1;
}

// Resident memory now (VmRSS) and its peak (VmHWM), in bytes.
inline double rss_bytes() { return static_cast<double>(status_kib("VmRSS")) * 1024.0; }
inline double peak_rss_bytes() { return static_cast<double>(status_kib("VmHWM")) * 1024.0; }
// Page tables (VmPTE): real memory that VmRSS does not count.
inline double page_table_bytes() { return static_cast<double>(status_kib("VmPTE")) * 1024.0; }

// reset_peak_rss() sets VmHWM back to the current RSS (Linux >= 4.0,
// `echo 5 > /proc/self/clear_refs`), so a peak measured afterwards belongs to
// the code that follows, not to an earlier benchmark of the same process.
// Returns false when the kernel refused (then the peak is process-wide).
inline bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

// CPU time (user + system) of every thread of the process, in seconds.
inline double process_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

inline double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr double mib = 1024.0 * 1024.0;

// Peak RSS of the benchmark: call peak_rss_scope at the top of the benchmark
// function; its destructor publishes counter "peak_rss_mib" (VmHWM since the
// reset, in MiB).
class peak_rss_scope {
 public:
  explicit peak_rss_scope(benchmark::State& state) : state_(state) { reset_peak_rss(); }
  peak_rss_scope(const peak_rss_scope&) = delete;
  peak_rss_scope& operator=(const peak_rss_scope&) = delete;
  ~peak_rss_scope() { state_.counters["peak_rss_mib"] = peak_rss_bytes() / mib; }

 private:
  benchmark::State& state_;
};

// Per-item time as a counter: Counter(items, kIsRate | kInvert) is seconds per
// item; the console prints it with an SI prefix ("95.3n" = 95.3 ns).
inline benchmark::Counter seconds_per(double items) {
  return benchmark::Counter(items, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace goro_bench
