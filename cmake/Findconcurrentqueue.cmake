# SPDX-License-Identifier: MIT
#
# Findconcurrentqueue
# -------------------
# Finds moodycamel::ConcurrentQueue (header-only). Debian's libconcurrentqueue-dev
# ships no CMake or pkg-config file, only /usr/include/concurrentqueue/concurrentqueue.h,
# which is how goro includes it (include/goro/detail/global_queue.hpp).
#
# Result variables:
#   concurrentqueue_FOUND         TRUE if the header was found
#   concurrentqueue_INCLUDE_DIRS  the directory to add, so that
#                                 <concurrentqueue/concurrentqueue.h> resolves
# Cache variables:
#   concurrentqueue_INCLUDE_DIR
# Imported target (the name upstream's own config exports; created only if absent):
#   concurrentqueue::concurrentqueue
#
# goro installs this file next to goroConfig.cmake, which finds it via CMAKE_MODULE_PATH.

find_path(concurrentqueue_INCLUDE_DIR
  NAMES concurrentqueue/concurrentqueue.h
  DOC "Directory containing concurrentqueue/concurrentqueue.h")
mark_as_advanced(concurrentqueue_INCLUDE_DIR)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(concurrentqueue
  REQUIRED_VARS concurrentqueue_INCLUDE_DIR)

if(concurrentqueue_FOUND)
  set(concurrentqueue_INCLUDE_DIRS "${concurrentqueue_INCLUDE_DIR}")
  if(NOT TARGET concurrentqueue::concurrentqueue)
    add_library(concurrentqueue::concurrentqueue INTERFACE IMPORTED)
    set_target_properties(concurrentqueue::concurrentqueue PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${concurrentqueue_INCLUDE_DIR}")
  endif()
endif()
