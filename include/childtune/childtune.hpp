#pragma once
//! \file
//! Umbrella header of the core library (standard library only).

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/random/philox.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/sgd.hpp>
