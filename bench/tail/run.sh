#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# goro-tail vs GNU tail, same machine, same run; prints a markdown table.
#
# Usage: bench/tail/run.sh                 (from any directory)
#   SIZE_MB=500        throughput file size
#   REPS=3             throughput runs per follower (median)
#   LAT_COUNT=1000 LAT_INTERVAL_MS=5   follow-latency lines and spacing
#   IDLE_FILES=50 IDLE_S=10            idle-CPU run
#   ONLY=throughput,latency,idle       a subset
#   GORO_TAIL=/path/to/goro-tail       use this binary instead of building one
#   GORO_TAIL_BUILD=dir                build directory (default build/tail-bench)
#
# What it measures (bench/tail/bench.py):
#   throughput  `tail -n +1 FILE > /dev/null` (GNU, reads to EOF and exits) vs
#               `tail -n +1 -F FILE` and `goro-tail FILE`, which follow forever:
#               time to the last byte on stdout, then SIGTERM
#   latency     p50/p99 from write() to the line on the follower's stdout:
#               GNU tail -F (inotify), GNU tail -F polling every 0.1 s,
#               goro-tail (inotify), goro-tail --poll 100
#   idle CPU    utime+stime (/proc/PID/stat) while following 50 unchanging files
# goro-tail is built Release (examples on, tests off) unless GORO_TAIL is given.
set -euo pipefail

die() { echo "bench/tail/run.sh: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
command -v python3 >/dev/null || die "python3 not found"
command -v tail >/dev/null || die "GNU tail (coreutils) not found"

if [ -n "${GORO_TAIL:-}" ]; then
  bin=$GORO_TAIL
else
  build=${GORO_TAIL_BUILD:-$root/build/tail-bench}
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGORO_BUILD_TESTS=OFF -DGORO_BUILD_EXAMPLES=ON -DGORO_INSTALL=OFF >/dev/null
  cmake --build "$build" --target goro-tail -j2
  bin=$build/examples/tail/goro-tail
fi
[ -x "$bin" ] || die "$bin is not an executable"

echo "## goro-tail vs GNU tail"
echo
echo "$(uname -srm), $(nproc) CPUs, $(tail --version | head -1), $(date -u +%Y-%m-%d)"
echo "command: bench/tail/run.sh (SIZE_MB=${SIZE_MB:-500} REPS=${REPS:-3})"
python3 "$root/bench/tail/bench.py" --goro-tail "$bin" \
  --size-mb "${SIZE_MB:-500}" --reps "${REPS:-3}" \
  --lat-count "${LAT_COUNT:-1000}" --lat-interval-ms "${LAT_INTERVAL_MS:-5}" \
  --idle-files "${IDLE_FILES:-50}" --idle-s "${IDLE_S:-10}" \
  --only "${ONLY:-throughput,latency,idle}"
