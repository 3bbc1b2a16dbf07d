#pragma once
//! \file
//! Before 0.2 the compact Child-Tuning_D kernel had a header of its own; it is
//! now a state layout of the one element pass (exec/kernel.hpp), and its range
//! entry point, cpu_compact_step_range, is in exec/cpu_step.hpp.
#pragma message("childtune/exec/compact_step.hpp is deprecated: include <childtune/exec/cpu_step.hpp>")
#include <childtune/exec/cpu_step.hpp>
