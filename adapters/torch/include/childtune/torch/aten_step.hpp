#pragma once
//! \file
//! The Child-Tuning step as a composition of ATen operations: the path for
//! tensors the fused CPU kernel cannot touch (CUDA and other devices, when the
//! Thrust kernels are not compiled in). It follows the same rules and operation
//! order as the fused step (update/*.hpp), so results agree to float rounding, but
//! it makes several passes over memory and computes Bernoulli keep bits on the host.

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/sgd.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace childtune::torch::detail {

//! Keep decisions of one tensor for one step: `keep` is a bool tensor on the
//! parameter's device, undefined when every element is kept.
struct aten_mask {
    at::Tensor keep;
    double keep_probability = 1.0;
};

//! Unpacks 64-bit keep words into a bool tensor of `size` elements (on the host).
template <class WordSource>
at::Tensor keep_tensor(std::size_t size, WordSource&& word_at) {
    at::Tensor keep = at::empty({static_cast<std::int64_t>(size)}, at::TensorOptions().dtype(at::kBool));
    auto* out = keep.data_ptr<bool>();
    for (std::size_t first = 0; first < size; first += 64) {
        const std::uint64_t bits = word_at(first);
        const std::size_t n = std::min<std::size_t>(64, size - first);
        for (std::size_t j = 0; j < n; ++j) out[first + j] = ((bits >> j) & 1u) != 0;
    }
    return keep;
}
inline at::Tensor keep_tensor(const bernoulli_view& v, std::size_t size) {
    return keep_tensor(size, [&](std::size_t first) { return v.bits64(first); });
}
inline at::Tensor keep_tensor(const bit_mask& m) {
    return keep_tensor(m.size(), [&](std::size_t first) {
        const std::size_t w = first / 64; // `first` is a multiple of 64 here
        return m.words()[w];
    });
}

inline at::Tensor where_kept(const at::Tensor& keep, const at::Tensor& a, const at::Tensor& b) {
    return keep.defined() ? at::where(keep, a, b) : a;
}

//! The gradient the moments see: masked and divided by p when the mask targets
//! the gradient (the reference), unchanged when it targets the update.
inline at::Tensor masked_gradient(const at::Tensor& g, const aten_mask& m, masking_options mo) {
    if (mo.target != mask_target::gradient || !m.keep.defined()) return g;
    const at::Tensor scaled = m.keep_probability != 1.0 ? g / m.keep_probability : g;
    return at::where(m.keep, scaled, at::zeros_like(g));
}

//! Elements that take weight decay: all, unless decay skips masked entries.
inline at::Tensor decay_mask(const aten_mask& m, masking_options mo) {
    return mo.decay_masked ? at::Tensor() : m.keep;
}

//! p += delta, masked and divided by p when the mask targets the update.
inline void apply_update(at::Tensor& p, const at::Tensor& delta, const aten_mask& m, masking_options mo) {
    if (mo.target != mask_target::update || !m.keep.defined()) {
        p.add_(delta);
        return;
    }
    const at::Tensor scaled = m.keep_probability != 1.0 ? delta / m.keep_probability : delta;
    p.copy_(at::where(m.keep, p + scaled, p));
}

//! One step of `Rule` on parameter `param` (any device, any supported dtype) with
//! state tensors in the state precision. `step` counts this tensor's steps
//! including this one; `fresh` says the state was just created.
template <class Rule>
void aten_step(const typename Rule::options& o, std::uint64_t step, bool fresh, at::Tensor& param, const at::Tensor& grad,
               at::Tensor (&state)[2], const aten_mask& m, masking_options mo) {
    const at::ScalarType state_type = state[0].defined() ? state[0].scalar_type() : param.scalar_type();
    at::Tensor p = param.scalar_type() == state_type ? param : param.to(state_type);
    const at::Tensor g = masked_gradient(grad.to(state_type), m, mo);
    const at::Tensor dk = decay_mask(m, mo);

    if constexpr (std::is_same_v<Rule, adamw> || std::is_same_v<Rule, adam>) {
        const double t = static_cast<double>(step);
        bool correct_bias = true;
        if constexpr (std::is_same_v<Rule, adamw>) correct_bias = o.correct_bias;
        const double bc1 = correct_bias ? 1.0 - std::pow(o.beta1, t) : 1.0;
        const double bc2 = correct_bias ? 1.0 - std::pow(o.beta2, t) : 1.0;
        bool legacy = false;
        if constexpr (std::is_same_v<Rule, adamw>) legacy = o.flavour == adamw_flavour::legacy;
        at::Tensor grad_in = g;
        if constexpr (std::is_same_v<Rule, adam>)
            if (o.weight_decay != 0.0) grad_in = where_kept(dk, g + p * o.weight_decay, g);
        if constexpr (std::is_same_v<Rule, adamw>)
            if (!legacy && o.weight_decay != 0.0) p.copy_(where_kept(dk, p * (1.0 - o.lr * o.weight_decay), p));
        at::Tensor& exp_avg = state[0];
        at::Tensor& exp_avg_sq = state[1];
        exp_avg.mul_(o.beta1).add_(grad_in, 1.0 - o.beta1);
        exp_avg_sq.mul_(o.beta2).addcmul_(grad_in, grad_in, 1.0 - o.beta2);
        const at::Tensor denom = legacy ? exp_avg_sq.sqrt().add_(o.eps) : (exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(o.eps);
        const double step_size = legacy ? o.lr * std::sqrt(bc2) / bc1 : o.lr / bc1;
        apply_update(p, exp_avg.mul(-step_size).div_(denom), m, mo);
        if constexpr (std::is_same_v<Rule, adamw>)
            if (legacy && o.weight_decay != 0.0) p.copy_(where_kept(dk, p + p * (-o.lr * o.weight_decay), p));
    } else {
        static_assert(std::is_same_v<Rule, sgd>, "the ATen path knows adamw, adam and sgd");
        at::Tensor d = g;
        if (o.weight_decay != 0.0) d = where_kept(dk, g + p * o.weight_decay, g);
        if (o.momentum != 0.0) {
            at::Tensor& buf = state[0];
            if (fresh) buf.copy_(d);
            else buf.mul_(o.momentum).add_(d, 1.0 - o.dampening);
            d = o.nesterov ? d + buf * o.momentum : buf;
        }
        apply_update(p, d * (-o.lr), m, mo);
    }
    if (!p.is_same(param)) param.copy_(p);
}

} // namespace childtune::torch::detail
