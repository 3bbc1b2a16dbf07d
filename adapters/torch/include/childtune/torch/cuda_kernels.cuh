#pragma once
//! \file
//! The LibTorch optimizers' CUDA kernels (torch/cuda_step.hpp): include this in
//! one translation unit compiled by nvcc (-std=c++20) and name the rules whose
//! CUDA parameters should run the Thrust executor's fused, batched kernels on
//! torch's current stream:
//!
//!     #include <childtune/torch/cuda_kernels.cuh>
//!     CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adamw)
//!     CHILDTUNE_TORCH_CUDA_KERNELS(childtune::lamb)
//!
//! It includes no LibTorch header but c10's CUDA stream (which nvcc compiles).

#include <childtune/thrust/step.hpp>
#include <childtune/torch/cuda_step.hpp>

#include <c10/cuda/CUDAStream.h>
#include <thrust/execution_policy.h>

#include <type_traits>
#include <variant>
#include <vector>

namespace childtune::torch::detail {

//! The tensors of group g with parameter type P, one launch per kind of mask view.
template <class Rule, class P, class Policy>
void launch_cuda_group(const cuda_launch<Rule>& l, std::size_t g, const Policy& policy) {
    using S = std::conditional_t<std::is_same_v<P, double>, double, float>;
    std::vector<childtune::thrust::tensor_step<P, S, dense_view>> dense;
    std::vector<childtune::thrust::tensor_step<P, S, bernoulli_view>> keyed;
    std::vector<childtune::thrust::tensor_step<P, S, fixed_view>> words;
    for (const auto& t : l.tensors) {
        if (t.group != g || t.param_type != dtype_of<P>) continue;
        const auto make = [&](auto view) {
            childtune::thrust::tensor_step<P, S, decltype(view)> s{t.name, static_cast<P*>(t.param),
                                                                   static_cast<const P*>(t.grad), {}, t.size, view,
                                                                   t.step, t.fresh};
            for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b) s.state[b] = static_cast<S*>(t.state[b]);
            return s;
        };
        if (const auto* b = std::get_if<bernoulli_view>(&t.mask)) keyed.push_back(make(*b));
        else if (const auto* f = std::get_if<fixed_view>(&t.mask)) words.push_back(make(*f));
        else dense.push_back(make(dense_view{}));
    }
    const auto& o = l.group_options[g];
    const auto off = childtune::thrust::memory_check::off;
    if (!dense.empty()) childtune::thrust::step<Rule>(policy, o, l.masking, dense, off);
    if (!keyed.empty()) childtune::thrust::step<Rule>(policy, o, l.masking, keyed, off);
    if (!words.empty()) childtune::thrust::step<Rule>(policy, o, l.masking, words, off);
}

template <class Rule>
void launch_cuda(const cuda_launch<Rule>& l) {
    const auto policy = ::thrust::cuda::par.on(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(l.device)).stream());
    for (std::size_t g = 0; g < l.group_options.size(); ++g) {
        launch_cuda_group<Rule, float>(l, g, policy);
        launch_cuda_group<Rule, double>(l, g, policy);
        launch_cuda_group<Rule, bfloat16>(l, g, policy);
        launch_cuda_group<Rule, float16>(l, g, policy);
    }
}

//! Registers Rule's launcher when the program starts.
template <class Rule>
struct cuda_registration {
    cuda_registration() { cuda_kernels<Rule>::launch = &launch_cuda<Rule>; }
};

} // namespace childtune::torch::detail

//! Pastes two tokens as given (CHILDTUNE_TORCH_CUDA_KERNELS_CAT expands them first).
#define CHILDTUNE_TORCH_CUDA_KERNELS_CAT2(a, b) a##b
//! Expands both arguments, then pastes them: a variable name unique per line.
#define CHILDTUNE_TORCH_CUDA_KERNELS_CAT(a, b) CHILDTUNE_TORCH_CUDA_KERNELS_CAT2(a, b)
//! Compiles `Rule`'s CUDA kernels into this unit and registers them.
#define CHILDTUNE_TORCH_CUDA_KERNELS(...)                                                                              \
    static const ::childtune::torch::detail::cuda_registration<__VA_ARGS__> CHILDTUNE_TORCH_CUDA_KERNELS_CAT(         \
        childtune_torch_cuda_kernels_, __LINE__){};
