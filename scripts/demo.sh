#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The README's demo command: installs missing packages (as root), builds the
# default preset's `fanout` example and runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/test-all.sh --deps-only
cmake --preset default
cmake --build --preset default --target fanout
./build/default/examples/fanout
