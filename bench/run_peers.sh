#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Kept so old notes and scripts still work: the runner is now bench/run.sh
# (same knobs: REPS, WORKLOADS, RUN_TIMEOUT, GORO_BENCH_BUILD, ...).
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
