#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The project's one test command (README, .ci/run): for each preset in
# GORO_PRESETS (default: "default tsan asan") configure, build and run ctest;
# stop at the first failure with a non-zero exit.
#
#   scripts/test-all.sh               install missing Debian packages (as root), run all presets
#   GORO_PRESETS=default scripts/test-all.sh
#   scripts/test-all.sh --deps-only   only install missing packages (scripts/demo.sh uses this)
#
# GORO_STRESS_SCALE (stress test sizes) is 1 for plain presets and 0.1 under
# sanitizers unless you set it yourself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake ninja-build g++ clang libclang-rt-14-dev libboost-context-dev
          libconcurrentqueue-dev catch2 libbenchmark-dev python3)

install_missing_packages() {
  command -v dpkg >/dev/null 2>&1 || return 0   # not Debian: bring your own
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-all: missing packages (not root, not installing): ${missing[*]}" >&2
    return 0
  fi
  echo "test-all: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}

install_missing_packages
if [ "${1:-}" = "--deps-only" ]; then
  exit 0
fi

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

read -r -a presets <<<"${GORO_PRESETS:-default tsan asan}"
user_scale="${GORO_STRESS_SCALE:-}"
summary=()

print_summary() {
  echo
  echo "== test-all summary =="
  printf '%s\n' "${summary[@]}"
}

for p in "${presets[@]}"; do
  case "$p" in
    tsan|asan) scale="${user_scale:-0.1}" ;;
    *)         scale="${user_scale:-1}" ;;
  esac
  export GORO_STRESS_SCALE="$scale"
  echo "== preset $p (GORO_STRESS_SCALE=$scale) =="
  start=$SECONDS
  step=configure
  if cmake --preset "$p" &&
     { step=build; cmake --build --preset "$p" -j2; } &&
     { step=test; ctest --preset "$p"; }; then
    summary+=("preset $p: PASS ($((SECONDS - start))s)")
  else
    summary+=("preset $p: FAIL at $step ($((SECONDS - start))s)")
    print_summary
    exit 1
  fi
done
print_summary
