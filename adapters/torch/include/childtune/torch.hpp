#pragma once
//! \file
//! The LibTorch adapter: Child-Tuning optimizers as torch::optim::Optimizer
//! subclasses (ChildTuningAdamW, ChildTuningAdam, ChildTuningSGD) and the
//! Child-Tuning_D Fisher helper for torch::nn::Module.

#include <childtune/childtune.hpp>
#include <childtune/torch/fisher.hpp>
#include <childtune/torch/groups.hpp>
#include <childtune/torch/mask_from.hpp>
#include <childtune/torch/optimizer.hpp>
#include <childtune/torch/options.hpp>
#include <childtune/torch/tensor.hpp>
