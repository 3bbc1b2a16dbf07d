#pragma once
//! \file
//! The Thrust adapter: Child-Tuning on the memory of any Thrust system (CUDA,
//! OpenMP, TBB, CPP): the fused batched step, an optimizer owning device state,
//! the Fisher accumulator and the top-p selection of the Child-Tuning_D mask. `#include <childtune/thrust.hpp>`,
//! link `childtune::thrust`.

#include <childtune/thrust/fisher.hpp>
#include <childtune/thrust/mask_set.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/optimizer.hpp>
#include <childtune/thrust/order_statistic.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/thrust/top_p.hpp>
