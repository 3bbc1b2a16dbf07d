#pragma once
//! \file
//! The LibTorch executor: parameters, gradients and optimizer state are
//! LibTorch tensors; each parameter is stepped where it lives:
//!
//! - `host`: CPU tensors run the core's fused kernels on their own memory
//!   (exec/cpu_runner.hpp), in place, on OpenMP threads;
//! - `cuda`: CUDA tensors run the Thrust executor's batched kernels on torch's
//!   current stream, when a unit compiled by nvcc registered them for the rule
//!   (torch/cuda_kernels.cuh, see torch/cuda_step.hpp);
//! - `aten`: any other tensor (another device, or CUDA without the Thrust
//!   kernels) runs the rule as ATen operations (torch/aten_step.hpp).
//!
//! All three compute the scalar definition's bits. The executor moves data and
//! runs kernels; names, groups, masks, steps and files are the core registry's.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/exec/cpu_runner.hpp>
#include <childtune/exec/nonfinite.hpp>
#include <childtune/numeric/blockwise8.hpp>
#include <childtune/random/detail/aes_cap.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/state_layout.hpp>
#include <childtune/registry/step_plan.hpp>
#include <childtune/torch/aten_step.hpp>
#include <childtune/torch/cuda_step.hpp>
#include <childtune/torch/tensor.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune::torch::detail {

enum class placement : std::uint8_t { host, aten, cuda };

//! Where a parameter is stepped (see the file comment).
template <class Rule>
placement placement_of(const at::Tensor& p, bool force_aten) {
    if (force_aten) return placement::aten;
    if (p.device().is_cpu()) return placement::host;
    return p.device().is_cuda() && cuda_kernels<Rule>::launch ? placement::cuda : placement::aten;
}

template <update_rule Rule>
class executor {
public:
    static constexpr bool supports_compact = true;    // host tensors only (the optimizer checks)
    static constexpr bool supports_blockwise8 = true; // host tensors only (the optimizer checks)
    struct allocation {
        std::vector<childtune::detail::state_request> requests;
        std::vector<at::Tensor> buffers;
        std::size_t bytes() const {
            std::size_t n = 0;
            for (const auto& b : buffers) n += static_cast<std::size_t>(b.numel()) * b.element_size();
            return n;
        }
    };

    //! Chooses the CPU kernels' instruction set now (childtune/exec/cpu_isa.hpp)
    //! and reads the cap on the masks' AES instructions (random/detail/aes_cap.hpp):
    //! a malformed CHILDTUNE_MAX_ISA or CHILDTUNE_MAX_AES fails the optimizer's
    //! constructor, not a step whose device tensors were already stepped.
    executor() {
        (void)childtune::cpu_kernel_isa();
        childtune::detail::check_aes_cap();
    }

    void bind_new(const at::Tensor& param, placement where) {
        tensors_.push_back({param, {}, where, kernels_of(param), {}, {}});
    }
    void pop() noexcept { tensors_.pop_back(); }
    //! This step's gradient of tensor i (undefined: absent).
    void set_gradient(std::size_t i, at::Tensor grad) { tensors_[i].grad = std::move(grad); }
    placement where(std::size_t i) const { return tensors_[i].where; }
    void set_placement(std::size_t i, placement p) { tensors_[i].where = p; }
    std::size_t tensor_count() const { return tensors_.size(); }

    // ---- state ---------------------------------------------------------------------------

    template <class... Context>
    allocation allocate(std::vector<childtune::detail::state_request> requests,
                        std::vector<std::vector<std::byte>> from = {}, const Context&...) const {
        allocation a{std::move(requests), {}};
        for (std::size_t k = 0; k < a.requests.size(); ++k) {
            const auto& r = a.requests[k];
            if (r.quantised) { // 8-bit blockwise state: a host byte tensor, codes then scales (numeric/blockwise8.hpp)
                const auto bytes = static_cast<std::int64_t>(childtune::detail::blockwise8_buffer_bytes(r.elements, r.tensor_elements));
                const auto options = at::TensorOptions().dtype(at::kByte).device(at::kCPU);
                if (from.empty()) a.buffers.push_back(at::zeros({bytes}, options));
                else a.buffers.push_back(at::from_blob(from[k].data(), {bytes}, options).clone());
                continue;
            }
            const auto options = tensors_[r.tensor].param.options().dtype(r.type == dtype::float64 ? at::kDouble : at::kFloat);
            const auto n = static_cast<std::int64_t>(r.elements);
            if (from.empty()) a.buffers.push_back(at::zeros({n}, options));
            else a.buffers.push_back(at::from_blob(from[k].data(), {n}, options.device(at::kCPU)).to(options.device(), false, true));
        }
        return a;
    }
    void adopt(allocation&& a) noexcept {
        for (std::size_t k = 0; k < a.requests.size(); ++k)
            tensors_[a.requests[k].tensor].state[a.requests[k].buffer] = std::move(a.buffers[k]);
    }
    void release(std::size_t i, std::size_t from) noexcept {
        for (std::size_t b = from; b < childtune::detail::max_rule_state_buffers; ++b) tensors_[i].state[b] = at::Tensor();
    }
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& t : tensors_)
            for (const auto& s : t.state)
                if (s.defined()) n += static_cast<std::size_t>(s.numel()) * s.element_size();
        return n;
    }
    //! State buffer b of tensor i on the host.
    std::vector<std::byte> host_state(std::size_t i, std::size_t b) const {
        const at::Tensor s = tensors_[i].state[b].cpu().contiguous();
        std::vector<std::byte> out(static_cast<std::size_t>(s.numel()) * s.element_size());
        if (!out.empty()) std::memcpy(out.data(), s.data_ptr(), out.size());
        return out;
    }
    //! Replaces state buffer b of tensor i (a 0.1 archive's ATen state).
    void set_state(std::size_t i, std::size_t b, at::Tensor s) { tensors_[i].state[b] = std::move(s); }

    // ---- steps --------------------------------------------------------------------------------

    //! The first tensor, in order, whose gradient holds a NaN or an Inf. Host
    //! gradients are scanned in place. A device gradient is summed in double, one
    //! read pass (`at::isfinite(g).all()` makes five passes and four temporaries),
    //! and all sums come to the host in one copy: one synchronisation per step.
    //! A sum is non-finite exactly when an element is, except that double
    //! gradients near DBL_MAX can overflow it; those are confirmed element-wise.
    template <class... Context>
    std::optional<std::size_t> first_nonfinite(const childtune::detail::registry<Rule>& r, const Context&...) const {
        std::vector<std::size_t> on_device;
        std::vector<at::Tensor> sums;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            if (!r.tensors()[i].has_gradient || !t.grad.defined()) continue;
            if (t.where != placement::host) {
                on_device.push_back(i);
                sums.push_back(t.grad.sum(at::kDouble));
            } else if (!host_finite(t.grad)) {
                return first_nonfinite_on_device(on_device, sums).value_or(i);
            }
        }
        return first_nonfinite_on_device(on_device, sums);
    }

    //! The gradients of `tensors`, widened to float on the host (one copy from a
    //! device), for gradient-driven mask policies (registry/gradient_step.hpp).
    template <class... Context>
    std::vector<std::vector<float>> read_gradients(const childtune::detail::registry<Rule>&,
                                                   std::span<const std::size_t> tensors, const Context&...) const {
        std::vector<std::vector<float>> out;
        out.reserve(tensors.size());
        for (const auto i : tensors) {
            const at::Tensor g = tensors_[i].grad.detach().reshape({-1}).to(at::kFloat).cpu().contiguous();
            const auto n = static_cast<std::size_t>(g.numel());
            out.emplace_back(n);
            if (n) std::memcpy(out.back().data(), g.data_ptr<float>(), n * sizeof(float));
        }
        return out;
    }

    template <class Backend>
    void run(const childtune::detail::registry<Rule>& r, const childtune::detail::step_plan<Rule>& plan,
             const Backend& backend) {
        std::vector<childtune::detail::cpu_job<Rule>> host;
        cuda_launch<Rule> cuda;
        std::vector<at::Tensor> uploaded; // words of this step's device masks, alive until launched
        for (const auto& j : plan.jobs) {
            auto& t = tensors_[j.tensor];
            const auto& rec = r.tensors()[j.tensor];
            const bool d = rec.state_type == dtype::float64;
            if (t.where == placement::host) {
                childtune::detail::cpu_job<Rule> c;
                c.kernels = t.kernels;
                c.param = t.param.data_ptr();
                c.grad = t.grad.data_ptr();
                for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b)
                    c.state[b] = t.state[b].defined() ? t.state[b].data_ptr() : nullptr;
                c.buffers = j.buffers;
                c.size = static_cast<std::size_t>(t.param.numel());
                c.double_state = d;
                c.kept_before = j.compact ? rec.kept_before.data() : nullptr;
                c.quantised = rec.quantised;
                c.param_bytes = static_cast<std::size_t>(t.param.element_size());
                c.mask = &j.mask;
                c.constants_f = j.constants_f;
                c.constants_d = j.constants_d;
                host.push_back(c);
            } else if (t.where == placement::cuda) {
                cuda_tensor c{rec.name, rec.group, rec.type, t.param.data_ptr(), t.grad.data_ptr(), {},
                              static_cast<std::uint64_t>(t.param.numel()), rec.steps + 1, j.fresh, dense_view{}};
                for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b)
                    c.state[b] = t.state[b].defined() ? t.state[b].data_ptr() : nullptr;
                if (const auto* keyed = std::get_if<bernoulli_view>(&j.mask.get())) c.mask = *keyed;
                else if (!j.mask.dense()) c.mask = device_words(j, c.size, t.param.device(), uploaded);
                cuda.device = t.param.device().index();
                cuda.tensors.push_back(c);
            } else {
                at::Tensor p = t.param.view({-1});
                const at::Tensor keep = keep_of(j, static_cast<std::size_t>(p.numel()), p.device());
                const double kp = j.mask.keep_probability();
                const auto masking = r.options().masking;
                if (d) aten_step<Rule, double>(j.constants_d, masking, keep, kp, p, t.grad.view({-1}), t.state, j.buffers);
                else aten_step<Rule, float>(j.constants_f, masking, keep, kp, p, t.grad.view({-1}), t.state, j.buffers);
            }
        }
        if (!host.empty()) childtune::detail::run_cpu_jobs(host, r.options().masking, backend);
        if (!cuda.tensors.empty()) {
            cuda.masking = r.options().masking;
            for (const auto& g : r.groups()) cuda.group_options.push_back(g.options);
            cuda_kernels<Rule>::launch(cuda);
        }
    }

private:
    struct bound_tensor {
        at::Tensor param;
        at::Tensor grad;
        placement where;
        const childtune::detail::cpu_kernel_table<Rule>* kernels;
        at::Tensor state[childtune::detail::max_rule_state_buffers];
        //! A fixed mask on the device (a keep tensor for the ATen path, packed
        //! words for the CUDA kernels), and the host words it was made of.
        struct {
            const std::uint64_t* words = nullptr;
            std::uint64_t hash = 0;
            at::Tensor keep, device_words;
        } fixed_keep;
    };

    static const childtune::detail::cpu_kernel_table<Rule>* kernels_of(const at::Tensor& p) {
        switch (*element_type(p.scalar_type())) {
        case dtype::float64: return &childtune::detail::cpu_kernels<Rule, double>();
        case dtype::bfloat16: return &childtune::detail::cpu_kernels<Rule, bfloat16>();
        case dtype::float16: return &childtune::detail::cpu_kernels<Rule, float16>();
        default: return &childtune::detail::cpu_kernels<Rule, float>();
        }
    }
    //! The first of `tensors` whose gradient is not finite, by their sums (above).
    std::optional<std::size_t> first_nonfinite_on_device(const std::vector<std::size_t>& tensors,
                                                         const std::vector<at::Tensor>& sums) const {
        if (tensors.empty()) return std::nullopt;
        const at::Tensor all = at::stack(sums).cpu();
        const double* sum = all.data_ptr<double>();
        for (std::size_t k = 0; k < tensors.size(); ++k) {
            if (std::isfinite(sum[k])) continue;
            const at::Tensor& g = tensors_[tensors[k]].grad;
            if (g.scalar_type() != at::kDouble || !at::isfinite(g).all().template item<bool>()) return tensors[k];
        }
        return std::nullopt;
    }
    static bool host_finite(const at::Tensor& g) {
        const auto n = static_cast<std::size_t>(g.numel());
        switch (*element_type(g.scalar_type())) {
        case dtype::float64: return childtune::detail::all_finite(static_cast<const double*>(g.data_ptr()), n);
        case dtype::bfloat16: return childtune::detail::all_finite(static_cast<const bfloat16*>(g.data_ptr()), n);
        case dtype::float16: return childtune::detail::all_finite(static_cast<const float16*>(g.data_ptr()), n);
        default: return childtune::detail::all_finite(static_cast<const float*>(g.data_ptr()), n);
        }
    }

    //! The keep tensor of a job on `device`; a fixed mask's is kept while its bits stay.
    at::Tensor keep_of(const childtune::detail::tensor_job<Rule>& j, std::size_t n, const at::Device& device) {
        if (j.mask.dense()) return {};
        auto& cache = tensors_[j.tensor].fixed_keep;
        const std::uint64_t* words = childtune::detail::whole_fixed_words(j.mask, n);
        if (!words) return keep_tensor(j.mask, n).to(device);
        const std::uint64_t hash = childtune::detail::mask_words_hash(words, n);
        if (cache.words != words || cache.hash != hash || !cache.keep.defined()) {
            cache.keep = keep_tensor(j.mask, n).to(device);
            cache.device_words = at::Tensor();
            cache.words = words;
            cache.hash = hash;
        }
        return cache.keep;
    }

    //! The keep words of a job in device memory: a fixed mask's are kept while
    //! its bits stay, others are copied for this step.
    fixed_view device_words(const childtune::detail::tensor_job<Rule>& j, std::uint64_t n, const at::Device& device,
                            std::vector<at::Tensor>& uploaded) {
        const auto count = static_cast<std::int64_t>(n / 64 + (n % 64 != 0 ? 1 : 0));
        const auto upload = [&] {
            at::Tensor host = at::empty({count}, at::TensorOptions().dtype(at::kLong));
            j.mask.words(0, static_cast<std::size_t>(count), reinterpret_cast<std::uint64_t*>(host.data_ptr()));
            return host.to(device);
        };
        auto& cache = tensors_[j.tensor].fixed_keep;
        if (const std::uint64_t* words = childtune::detail::whole_fixed_words(j.mask, n)) {
            const std::uint64_t hash = childtune::detail::mask_words_hash(words, n);
            if (cache.words != words || cache.hash != hash || !cache.device_words.defined()) {
                cache.device_words = upload();
                cache.keep = at::Tensor();
                cache.words = words;
                cache.hash = hash;
            }
            return fixed_view(static_cast<const std::uint64_t*>(cache.device_words.data_ptr()), n, 0);
        }
        uploaded.push_back(upload());
        return fixed_view(static_cast<const std::uint64_t*>(uploaded.back().data_ptr()), n, 0);
    }

    std::vector<bound_tensor> tensors_;
};

} // namespace childtune::torch::detail
