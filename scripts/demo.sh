#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The README's demo command, the main job: installs missing packages (as root),
# builds the default preset's goro-tail and runs it for a few seconds against a
# log that a writer keeps appending to and rotating (rename rotations and
# copytruncates). Prints lines written / delivered / lost / duplicated,
# rotations followed, write-to-output latency p50/p99 and live fibers at exit;
# exits non-zero if a line was lost or duplicated. The writer and checker are
# tests/tail/demo.py (the same line format and checker as the tail.* tests).
#
#   DEMO_SECONDS=6 (how long the writer writes), DEMO_RATE=20000 (lines/s it aims for)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/test-all.sh --deps-only
cmake --preset default
cmake --build --preset default --target goro-tail
python3 tests/tail/demo.py --binary build/default/examples/tail/goro-tail \
  --seconds "${DEMO_SECONDS:-6}" --rate "${DEMO_RATE:-20000}"
