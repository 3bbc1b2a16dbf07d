#pragma once
//! \file
//! CUDA parameters of the LibTorch optimizers through the Thrust executor's
//! batched kernels (thrust/step.hpp), on torch's current CUDA stream: one
//! launch per group, parameter type and kind of mask, instead of the ATen
//! path's many passes. Compiled where the translation unit is compiled by nvcc
//! with CHILDTUNE_TORCH_CUDA defined (CMake: childtune_torch_cuda_program(), or
//! `-DCHILDTUNE_TORCH_CUDA` against a CUDA LibTorch); elsewhere CUDA tensors take
//! the ATen path (torch/aten_step.hpp), with the same results.

#include <childtune/mask/any_mask_view.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/step_plan.hpp>

#include <ATen/ATen.h>

#if defined(CHILDTUNE_TORCH_CUDA) && defined(__CUDACC__)
#include <childtune/registry/state_layout.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/torch/tensor.hpp>

#include <c10/cuda/CUDAStream.h>
#include <thrust/execution_policy.h>

#include <cstdint>
#include <variant>
#include <vector>
#endif

namespace childtune::torch::detail {

#if defined(CHILDTUNE_TORCH_CUDA) && defined(__CUDACC__)

inline constexpr bool cuda_kernels_compiled = true;

//! The CUDA jobs of one step, launched together by run().
template <class Rule>
class cuda_batch {
public:
    void add(const childtune::detail::registry<Rule>& r, const childtune::detail::tensor_job<Rule>& j, const at::Tensor& param,
             const at::Tensor& grad, const at::Tensor* state) {
        jobs_.push_back({&j, param, grad, state, r.tensors()[j.tensor].group});
    }

    void run(const childtune::detail::registry<Rule>& r) {
        if (jobs_.empty()) return;
        const auto policy = ::thrust::cuda::par.on(c10::cuda::getCurrentCUDAStream().stream());
        for (std::size_t g = 0; g < r.group_count(); ++g) {
            launch<float>(r, g, policy);
            launch<double>(r, g, policy);
            launch<bfloat16>(r, g, policy);
            launch<float16>(r, g, policy);
        }
    }

private:
    struct job {
        const childtune::detail::tensor_job<Rule>* plan;
        at::Tensor param, grad;
        const at::Tensor* state;
        std::size_t group;
    };

    template <class P, class Policy>
    void launch(const childtune::detail::registry<Rule>& r, std::size_t g, const Policy& policy) {
        using S = std::conditional_t<std::is_same_v<P, double>, double, float>;
        std::vector<childtune::thrust::tensor_step<P, S, dense_view>> dense;
        std::vector<childtune::thrust::tensor_step<P, S, bernoulli_view>> keyed;
        std::vector<childtune::thrust::tensor_step<P, S, fixed_view>> words;
        for (const auto& j : jobs_) {
            if (j.group != g || *element_type(j.param.scalar_type()) != dtype_of<P>) continue;
            const auto& rec = r.tensors()[j.plan->tensor];
            const auto make = [&](auto view) {
                childtune::thrust::tensor_step<P, S, decltype(view)> s{rec.name, static_cast<P*>(j.param.data_ptr()),
                                                                       static_cast<const P*>(j.grad.data_ptr()), {},
                                                                       static_cast<std::uint64_t>(j.param.numel()), view,
                                                                       rec.steps + 1, j.plan->fresh};
                for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b)
                    s.state[b] = j.state[b].defined() ? static_cast<S*>(j.state[b].data_ptr()) : nullptr;
                return s;
            };
            const auto& v = j.plan->mask.get();
            if (std::holds_alternative<dense_view>(v)) dense.push_back(make(dense_view{}));
            else if (const auto* b = std::get_if<bernoulli_view>(&v)) keyed.push_back(make(*b));
            else words.push_back(make(device_words(j.plan->mask, static_cast<std::uint64_t>(j.param.numel()), j.param.device())));
        }
        const auto& o = r.group(g).options;
        const auto masking = r.options().masking;
        const auto off = childtune::thrust::memory_check::off;
        if (!dense.empty()) childtune::thrust::step<Rule>(policy, o, masking, dense, off);
        if (!keyed.empty()) childtune::thrust::step<Rule>(policy, o, masking, keyed, off);
        if (!words.empty()) childtune::thrust::step<Rule>(policy, o, masking, words, off);
    }

    //! Packed keep words in device memory (a fixed mask's, or a policy's own view's).
    fixed_view device_words(const any_mask_view& v, std::uint64_t n, const at::Device& device) {
        const std::int64_t count = static_cast<std::int64_t>(n / 64 + (n % 64 != 0 ? 1 : 0));
        at::Tensor host = at::empty({count}, at::TensorOptions().dtype(at::kLong));
        v.words(0, static_cast<std::size_t>(count), reinterpret_cast<std::uint64_t*>(host.data_ptr()));
        uploaded_.push_back(host.to(device, false, true));
        return fixed_view(reinterpret_cast<const std::uint64_t*>(uploaded_.back().data_ptr()), n, 0);
    }

    std::vector<job> jobs_;
    std::vector<at::Tensor> uploaded_;
};

#else

inline constexpr bool cuda_kernels_compiled = false;

//! Without the CUDA kernels no tensor is placed on this path.
template <class Rule>
class cuda_batch {
public:
    void add(const childtune::detail::registry<Rule>&, const childtune::detail::tensor_job<Rule>&, const at::Tensor&,
             const at::Tensor&, const at::Tensor*) {}
    void run(const childtune::detail::registry<Rule>&) {}
};

#endif

} // namespace childtune::torch::detail
