#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# goro vs Go vs Boost.Fiber on the same workloads, side by side, in one run;
# writes bench/RESULTS.md and bench/results.svg.
#
# Usage: bash bench/run.sh                (from any directory)
#   REPS=5          runs of each implementation per workload (default 5)
#   WORKLOADS="pingpong mpmc"   a subset, for a quick look (default: all, below)
#   RUN_TIMEOUT=600 seconds before one run is killed (and reported missing)
#   GO=/path/to/go  CXX=g++  CC=cc           toolchains for the peers
#   RESULTS=path    where to write the report (default bench/RESULTS.md);
#                   CHART=path the chart (default bench/results.svg)
#   GORO_BENCH_BUILD=/tmp/b  build goro's benchmarks in this directory
#                   (configured with the bench preset's cache variables if it
#                   is not yet) instead of the bench preset's build/bench
#   INSTALL_GNUPLOT=0  never apt-get install gnuplot-nox (the chart is then
#                   drawn by summarize.py's own SVG writer if gnuplot is missing)
#
# What it does:
#   1. builds goro's benchmarks (Release, Google Benchmark);
#   2. builds the Go peers (bench/peers/go/*.go, `go build`, GOPATH/GOCACHE
#      under /tmp) and the Boost.Fiber peers (bench/peers/boost_fiber/*.cpp,
#      g++ -O2); a peer whose toolchain is missing is skipped with a message;
#      also bench/peers/measure.c, the launcher that times each process and
#      reads its peak RSS (wait4's ru_maxrss);
#   3. for each rep, for each workload: runs goro, then Go (GOMAXPROCS=2), then
#      Boost.Fiber (work_stealing on 2 threads), so all three see the same
#      machine load; goro's Google Benchmark binaries run with
#      --benchmark_repetitions=1 and JSON output, once per rep;
#   4. bench/peers/summarize.py prints the table (median [min-max], ratios,
#      peak RSS, issue 7's targets) and rewrites the generated section of
#      bench/RESULTS.md (hand-written sections outside its markers are kept),
#      then draws bench/results.svg (gnuplot, else plain Python).
set -euo pipefail

die() { echo "run.sh: error: $*" >&2; exit 1; }
note() { echo "run.sh: $*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

all_workloads="switch spawn skynet memory pingpong mpmc select pool sleepers primitives io"
REPS=${REPS:-5}
user_workloads=${WORKLOADS:-}
WORKLOADS=${WORKLOADS:-$all_workloads}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
CXX=${CXX:-g++}
CC=${CC:-cc}
RESULTS=${RESULTS:-$root/bench/RESULTS.md}
CHART=${CHART:-$root/bench/results.svg}
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, got '$REPS'"
for w in $WORKLOADS; do
  [[ " $all_workloads " == *" $w "* ]] || die "unknown workload '$w' ($all_workloads)"
done
command -v cmake >/dev/null || die "cmake not found"
command -v python3 >/dev/null || die "python3 not found (needed to parse and summarise)"
command -v "$CC" >/dev/null || die "$CC not found (needed for bench/peers/measure.c)"

work=$(mktemp -d /tmp/goro-bench.XXXXXX)
raw="$work/raw"
bin="$work/bin"
mkdir -p "$raw" "$bin"
note "scratch directory: $work"
: >"$raw/skipped.txt"
start_load=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$SECONDS

# ---- 1. goro --------------------------------------------------------------
if [[ -n "${GORO_BENCH_BUILD:-}" ]]; then
  build_dir=$GORO_BENCH_BUILD
  note "building goro benchmarks in $build_dir"
  build_cmd=(eval "cmake -S '$root' -B '$build_dir' -DCMAKE_BUILD_TYPE=Release -DGORO_BUILD_BENCH=ON \
    -DGORO_BUILD_TESTS=OFF -DGORO_BUILD_EXAMPLES=OFF && cmake --build '$build_dir' -j 2")
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

"$CC" -O2 -o "$bin/measure" bench/peers/measure.c >"$work/measure-build.log" 2>&1 ||
  { cat "$work/measure-build.log" >&2; die "building bench/peers/measure.c failed"; }

# ---- 2. peers ---------------------------------------------------------------
# A workload has a peer when bench/peers/<peer>/<workload>.* exists
# (primitives is goro only; io has a Go peer only).
have_go=0
GO=${GO:-$(command -v go || true)}
[[ -n "$GO" ]] || GO=/usr/lib/go-1.19/bin/go
if [[ -x "$GO" ]]; then
  note "building Go peers with $GO"
  export GOPATH=/tmp/goro-peers-gopath GOCACHE=/tmp/goro-peers-gocache
  have_go=1
  for w in $WORKLOADS; do
    [[ -f "bench/peers/go/$w.go" ]] || continue
    if ! "$GO" build -o "$bin/go_$w" "bench/peers/go/$w.go" bench/peers/go/peer_support.go >"$work/go-build-$w.log" 2>&1; then
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
    [[ -f "bench/peers/boost_fiber/$w.cpp" ]] || continue
    if ! "$CXX" -std=c++17 -O2 -o "$bin/boost_$w" "bench/peers/boost_fiber/$w.cpp" \
      -lboost_fiber -lboost_context -pthread >"$work/boost-build-$w.log" 2>&1; then
      cat "$work/boost-build-$w.log" >&2
      die "building bench/peers/boost_fiber/$w.cpp failed (is libboost-fiber-dev installed?)"
    fi
  done
fi

# ---- 3. runs, alternating -----------------------------------------------------
# run_one <impl> <workload> <rep> <output> <command...>: runs under
# bench/peers/measure.c (wall time, peak RSS -> <output>.proc). A failed or
# timed-out run is reported and left out of the medians; the others go on.
run_one() {
  local impl=$1 w=$2 rep=$3 out=$4
  shift 4
  if ! "$bin/measure" "$RUN_TIMEOUT" "$raw/$impl.$w.$rep.proc" -- "$@" >"$out" 2>"$out.stderr"; then
    note "  $impl $w (rep $rep) FAILED or timed out; stderr:"
    tail -n 5 "$out.stderr" >&2 || true
    rm -f "$out" "$raw/$impl.$w.$rep.proc"
    return 0
  fi
  note "  $impl $w: $(sed -n 's/^wall_s //p' "$raw/$impl.$w.$rep.proc") s, peak RSS $(sed -n 's/^maxrss_mib //p' "$raw/$impl.$w.$rep.proc") MiB"
}

for rep in $(seq 1 "$REPS"); do
  note "rep $rep of $REPS"
  for w in $WORKLOADS; do
    run_one goro "$w" "$rep" "$raw/goro.$w.$rep.log" \
      "$goro_bin/${w}_bench" --benchmark_repetitions=1 \
      --benchmark_out="$raw/goro.$w.$rep.json" --benchmark_out_format=json
    if ((have_go)) && [[ -x "$bin/go_$w" ]]; then
      run_one go "$w" "$rep" "$raw/go.$w.$rep.txt" env GOMAXPROCS=2 "$bin/go_$w"
    fi
    if ((have_boost)) && [[ -x "$bin/boost_$w" ]]; then
      run_one boost "$w" "$rep" "$raw/boost.$w.$rep.txt" "$bin/boost_$w"
    fi
  done
done

# ---- 4. summary, chart ----------------------------------------------------------
first_line() { "$@" 2>&1 | head -n1 || true; }
cmd="REPS=$REPS${user_workloads:+ WORKLOADS=\"$user_workloads\"}${GORO_BENCH_BUILD:+ GORO_BENCH_BUILD=$GORO_BENCH_BUILD} bash bench/run.sh"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: \`$cmd\` (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z "$(git status --porcelain 2>/dev/null)" ]] || echo ', uncommitted changes'))"
  echo "cores: $(nproc); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); kernel: $(uname -r)"
  echo "load average (1/5/15 min) at start: $start_load; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "duration: $(((SECONDS - t_start) / 60)) min, builds included"
  echo "goro compiler: $(first_line "${goro_cxx:-c++}" --version) (build dir ${build_dir#"$root"/}, ${goro_build_type:-?})"
  echo "Google Benchmark: $(dpkg-query -W -f '${Version}' libbenchmark-dev 2>/dev/null || echo unknown)"
  if ((have_go)); then echo "Go: $(first_line "$GO" version) (GOMAXPROCS=2)"; fi
  if ((have_boost)); then
    echo "Boost.Fiber: $(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp | tr _ .), built with $(first_line "$CXX" --version) -O2"
  fi
} >"$raw/machine.txt"

# gnuplot draws the chart; install it when missing (Debian, as root) unless
# told not to; summarize.py falls back to its own SVG writer.
if ! command -v gnuplot >/dev/null && [[ "${INSTALL_GNUPLOT:-1}" != 0 ]] &&
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  note "installing gnuplot-nox for the chart (INSTALL_GNUPLOT=0 to skip)"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox; } \
    >"$work/gnuplot-install.log" 2>&1 || note "could not install gnuplot-nox (log: $work/gnuplot-install.log); drawing the chart in Python"
fi

python3 "$root/bench/peers/summarize.py" "$raw" "$RESULTS" "$CHART"
note "wrote $RESULTS and $CHART; raw outputs kept in $raw"
