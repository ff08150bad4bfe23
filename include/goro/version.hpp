// SPDX-License-Identifier: MIT
//
// goro version: the single source of truth. CMakeLists.txt regex-reads the three
// GORO_VERSION_* numbers below, so keep each on its own `#define NAME value` line.
#pragma once

#define GORO_VERSION_MAJOR 0
#define GORO_VERSION_MINOR 1
#define GORO_VERSION_PATCH 0
#define GORO_VERSION_STRING "0.1.0"
