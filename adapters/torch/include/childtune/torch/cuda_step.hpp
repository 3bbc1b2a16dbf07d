#pragma once
//! \file
//! How the LibTorch executor hands CUDA tensors to the Thrust executor's
//! batched kernels (thrust/step.hpp), on torch's current CUDA stream.
//!
//! The kernels must be compiled by nvcc, and LibTorch's own headers (1.13 at
//! least) do not compile as C++20 under nvcc, so the two sides meet here
//! through plain data: the executor (any compiler, torch/executor.hpp) fills a
//! cuda_launch of raw device pointers and mask views, and calls the launcher a
//! translation unit compiled by nvcc registered for the rule:
//!
//!     // my_kernels.cu, compiled by nvcc -std=c++20 and linked into the trainer
//!     #include <childtune/torch/cuda_kernels.cuh>
//!     CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adamw)
//!
//! Without such a unit, CUDA tensors take the ATen path (torch/aten_step.hpp),
//! with the same results in more passes over memory.

#include <childtune/concepts.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>
#include <vector>

namespace childtune::torch::detail {

//! One CUDA tensor of a step: device pointers, its step count and its mask (a
//! fixed view's words are in device memory).
struct cuda_tensor {
    std::string_view name;
    std::size_t group = 0;
    dtype param_type = dtype::float32;
    void* param = nullptr;
    const void* grad = nullptr;
    void* state[childtune::detail::max_rule_state_buffers] = {};
    std::uint64_t size = 0;
    std::uint64_t step = 1; //!< this tensor's steps, including this one
    bool fresh = false;
    std::variant<dense_view, bernoulli_view, fixed_view> mask;
};

//! The CUDA part of one step of a rule.
template <update_rule Rule>
struct cuda_launch {
    int device = 0;
    masking_options masking;
    std::vector<typename Rule::options> group_options;
    std::vector<cuda_tensor> tensors;
};

//! The launcher of a rule's CUDA kernels; null until a unit compiled by nvcc
//! registers it (CHILDTUNE_TORCH_CUDA_KERNELS in torch/cuda_kernels.cuh).
template <update_rule Rule>
struct cuda_kernels {
    static inline void (*launch)(const cuda_launch<Rule>&) = nullptr;
};

} // namespace childtune::torch::detail
