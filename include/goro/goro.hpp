// SPDX-License-Identifier: MIT
// The umbrella header: everything public in goro. Nothing else.
#pragma once

#include "goro/chan.hpp"
#include "goro/condition_variable.hpp"
#include "goro/context.hpp"
#include "goro/config.hpp"
#include "goro/diagnostics.hpp"
#include "goro/errors.hpp"
#include "goro/fiber_info.hpp"
#include "goro/mutex.hpp"
#include "goro/run_options.hpp"
#include "goro/runtime.hpp"
#include "goro/select.hpp"
#include "goro/source_location.hpp"
#include "goro/spawn.hpp"
#include "goro/testing.hpp"
#include "goro/this_fiber.hpp"
#include "goro/time.hpp"
#include "goro/version.hpp"
#include "goro/wait_group.hpp"
#include "goro/wait_reason.hpp"
