#pragma once
//! \file
//! Umbrella header of the core library (standard library only).

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/random/philox.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/sgd.hpp>
