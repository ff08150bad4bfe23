#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# goro vs Go vs Boost.Fiber on the same workloads, side by side, in one run.
#
# Usage: bench/run_peers.sh                 (from any directory)
#   REPS=5          runs of each implementation per workload (default 5)
#   WORKLOADS="switch spawn skynet memory"   a subset, for a quick look
#   RUN_TIMEOUT=600 seconds before one run is killed (and reported missing)
#   GO=/path/to/go  CXX=g++                   toolchains for the peers
#   RESULTS=path    where to write the report (default bench/RESULTS.md)
#   GORO_BENCH_BUILD=/tmp/b  an already configured build directory of goro's
#                   benchmarks to build and use instead of the bench preset
#
# What it does:
#   1. builds goro's benchmarks with the bench preset (build/bench);
#   2. builds the Go peers (bench/peers/go/*.go, `go build`, GOPATH/GOCACHE
#      under /tmp) and the Boost.Fiber peers (bench/peers/boost_fiber/*.cpp,
#      g++ -O2); a peer whose toolchain is missing is skipped with a message;
#   3. for each rep, for each workload: runs goro, then Go (GOMAXPROCS=2), then
#      Boost.Fiber (work_stealing on 2 threads), so all three see the same
#      machine load; goro's Google Benchmark binaries run with
#      --benchmark_repetitions=1 and JSON output, once per rep;
#   4. bench/peers/summarize.py prints the table (median [min-max], ratios,
#      peak RSS) and writes bench/RESULTS.md (or $RESULTS) with the machine
#      and command.
set -euo pipefail

die() { echo "run_peers.sh: error: $*" >&2; exit 1; }
note() { echo "run_peers.sh: $*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

REPS=${REPS:-5}
user_workloads=${WORKLOADS:-}
WORKLOADS=${WORKLOADS:-"switch spawn skynet memory"}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
CXX=${CXX:-g++}
RESULTS=${RESULTS:-$root/bench/RESULTS.md}
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, got '$REPS'"
for w in $WORKLOADS; do
  case "$w" in switch | spawn | skynet | memory) ;; *) die "unknown workload '$w' (switch spawn skynet memory)" ;; esac
done
command -v cmake >/dev/null || die "cmake not found"
command -v python3 >/dev/null || die "python3 not found (needed to parse and summarise)"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

work=$(mktemp -d /tmp/goro-peers.XXXXXX)
raw="$work/raw"
bin="$work/bin"
mkdir -p "$raw" "$bin"
note "scratch directory: $work"
: >"$raw/skipped.txt"
start_load=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- 1. goro --------------------------------------------------------------
if [[ -n "${GORO_BENCH_BUILD:-}" ]]; then
  build_dir=$GORO_BENCH_BUILD
  [[ -f "$build_dir/CMakeCache.txt" ]] || die "GORO_BENCH_BUILD=$build_dir is not a configured build directory"
  note "building goro benchmarks (cmake --build $build_dir)"
  build_cmd=(cmake --build "$build_dir")
else
  build_dir="$root/build/bench"
  note "building goro benchmarks (cmake --preset bench && cmake --build --preset bench)"
  build_cmd=(eval "cmake --preset bench && cmake --build --preset bench")
fi
if ! "${build_cmd[@]}" >"$work/goro-build.log" 2>&1; then
  tail -n 40 "$work/goro-build.log" >&2
  die "goro's bench build failed (full log: $work/goro-build.log)"
fi
goro_bin="$build_dir/bench"
for w in $WORKLOADS; do
  [[ -x "$goro_bin/${w}_bench" ]] || die "missing $goro_bin/${w}_bench after the build"
done
goro_cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt" | head -n1)
goro_build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt" | head -n1)

# ---- 2. peers ---------------------------------------------------------------
have_go=0
GO=${GO:-$(command -v go || true)}
[[ -n "$GO" ]] || GO=/usr/lib/go-1.19/bin/go
if [[ -x "$GO" ]]; then
  note "building Go peers with $GO"
  export GOPATH=/tmp/goro-peers-gopath GOCACHE=/tmp/goro-peers-gocache
  have_go=1
  for w in $WORKLOADS; do
    if ! "$GO" build -o "$bin/go_$w" "bench/peers/go/$w.go" >"$work/go-build-$w.log" 2>&1; then
      cat "$work/go-build-$w.log" >&2
      die "go build of bench/peers/go/$w.go failed"
    fi
  done
else
  note "skipping Go peers: no go toolchain (install golang-1.19-go or set GO=)"
  echo "go: no go toolchain found" >>"$raw/skipped.txt"
fi

have_boost=0
if ! command -v "$CXX" >/dev/null; then
  note "skipping Boost.Fiber peers: $CXX not found"
  echo "boost: $CXX not found" >>"$raw/skipped.txt"
elif [[ ! -f /usr/include/boost/fiber/all.hpp ]]; then
  note "skipping Boost.Fiber peers: Boost.Fiber headers not found (install libboost-fiber-dev)"
  echo "boost: libboost-fiber-dev not installed" >>"$raw/skipped.txt"
else
  note "building Boost.Fiber peers with $CXX -O2"
  have_boost=1
  for w in $WORKLOADS; do
    if ! "$CXX" -std=c++17 -O2 -o "$bin/boost_$w" "bench/peers/boost_fiber/$w.cpp" \
      -lboost_fiber -lboost_context -pthread >"$work/boost-build-$w.log" 2>&1; then
      cat "$work/boost-build-$w.log" >&2
      die "building bench/peers/boost_fiber/$w.cpp failed (is libboost-fiber-dev installed?)"
    fi
  done
fi

# ---- 3. runs, alternating -----------------------------------------------------
# run_one <impl> <workload> <rep> <output> <command...>: a failed or timed-out
# run is reported and left out of the medians; the others go on.
run_one() {
  local impl=$1 w=$2 rep=$3 out=$4
  shift 4
  local t0=$SECONDS
  if ! timeout "$RUN_TIMEOUT" "$@" >"$out" 2>"$out.stderr"; then
    note "  $impl $w (rep $rep) FAILED or timed out; stderr:"
    tail -n 5 "$out.stderr" >&2 || true
    rm -f "$out"
    return 0
  fi
  note "  $impl $w: $((SECONDS - t0)) s"
}

for rep in $(seq 1 "$REPS"); do
  note "rep $rep of $REPS"
  for w in $WORKLOADS; do
    run_one goro "$w" "$rep" "$raw/goro.$w.$rep.log" \
      "$goro_bin/${w}_bench" --benchmark_repetitions=1 \
      --benchmark_out="$raw/goro.$w.$rep.json" --benchmark_out_format=json
    if ((have_go)); then
      run_one go "$w" "$rep" "$raw/go.$w.$rep.txt" env GOMAXPROCS=2 "$bin/go_$w"
    fi
    if ((have_boost)); then
      run_one boost "$w" "$rep" "$raw/boost.$w.$rep.txt" "$bin/boost_$w"
    fi
  done
done

# ---- 4. summary ---------------------------------------------------------------
first_line() { "$@" 2>&1 | head -n1 || true; }
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: \`REPS=$REPS${user_workloads:+ WORKLOADS=\"$user_workloads\"}${GORO_BENCH_BUILD:+ GORO_BENCH_BUILD=$GORO_BENCH_BUILD} bench/run_peers.sh\` (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z "$(git status --porcelain 2>/dev/null)" ]] || echo ', uncommitted changes'))"
  echo "cores: $(nproc); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); kernel: $(uname -r)"
  echo "load average (1/5/15 min) at start: $start_load; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "goro compiler: $(first_line "${goro_cxx:-c++}" --version) (build dir ${build_dir#"$root"/}, ${goro_build_type:-?})"
  echo "Google Benchmark: $(dpkg-query -W -f '${Version}' libbenchmark-dev 2>/dev/null || echo unknown)"
  if ((have_go)); then echo "Go: $(first_line "$GO" version) (GOMAXPROCS=2)"; fi
  if ((have_boost)); then
    echo "Boost.Fiber: $(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp | tr _ .), built with $(first_line "$CXX" --version) -O2"
  fi
} >"$raw/machine.txt"

python3 "$root/bench/peers/summarize.py" "$raw" "$RESULTS"
note "wrote $RESULTS; raw outputs kept in $raw"
