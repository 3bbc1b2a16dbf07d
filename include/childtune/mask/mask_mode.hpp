#pragma once
//! \file
//! `mask_mode`: the closed set of built-in policies optimizers took before any
//! mask policy could be plugged in (dense, Child-Tuning_F, Child-Tuning_D). Kept
//! so that code written for 0.1 compiles; any mask_policy, built-in or the
//! user's, is held as an any_mask (mask/any_mask.hpp).

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>

#include <variant>

namespace childtune {

//! The three built-in ways a step masks the masked groups.
using mask_mode = std::variant<dense, bernoulli, fixed>;

} // namespace childtune
