#pragma once
//! \file
//! The Thrust adapter: Child-Tuning on the memory of any Thrust system (CUDA,
//! OpenMP, TBB, CPP): the fused batched step, an optimizer owning device state,
//! the Fisher accumulator and the top-p selection of the Child-Tuning_D mask. `#include <childtune/thrust.hpp>`,
//! link `childtune::thrust`.

#include <childtune/thrust/fisher.hpp>
#include <childtune/thrust/mask_from.hpp>
#include <childtune/thrust/mask_set.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/optimizer.hpp>
#include <childtune/thrust/order_statistic.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/thrust/top_p.hpp>

// The rules and mask policies the step and the optimizer take as arguments (all
// CHILDTUNE_HD, device-ready): enough for the README's Thrust snippet with no
// other include. Not the whole core (<childtune/childtune.hpp>): its CPU
// executor is host SIMD code that nvcc units need not parse.
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>
