// SPDX-License-Identifier: MIT
// Owner of the tests' precompiled header (Catch2 + goro); see tests/CMakeLists.txt.
