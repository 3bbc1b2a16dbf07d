#pragma once
//! \file
//! The ATen executor's kernel: a rule's element pass on whole tensors of any
//! device (torch/aten_lanes.hpp), the keep decisions as a bool tensor, and a
//! rule's per-tensor sums in the canonical order of exec/tensor_sum.hpp. It is
//! the path for tensors the fused kernels cannot take (other devices, when the
//! Thrust kernels are not compiled in); the results are the fused kernels' bit
//! for bit, at the cost of several passes over memory.

#include <childtune/exec/kernel.hpp>
#include <childtune/exec/tensor_sum.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/torch/aten_lanes.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <ATen/ATen.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace childtune::torch::detail {

//! The keep decisions of `size` elements as a bool tensor on the host;
//! undefined when every element is kept.
inline at::Tensor keep_tensor(const any_mask_view& v, std::size_t size) {
    if (v.dense()) return {};
    at::Tensor keep = at::empty({static_cast<std::int64_t>(size)}, at::TensorOptions().dtype(at::kBool));
    auto* out = keep.data_ptr<bool>();
    std::uint64_t words[16];
    for (std::size_t first = 0; first < size; first += 64 * 16) {
        const std::size_t n = std::min<std::size_t>(64 * 16, size - first);
        v.words(first, (n + 63) / 64, words);
        for (std::size_t j = 0; j < n; ++j) out[first + j] = ((words[j / 64] >> (j % 64)) & 1u) != 0;
    }
    return keep;
}

//! The canonical sum of `terms` (a tensor of n elements): blocks of 64 summed in
//! element order in double, then the pairwise levels.
inline double canonical_sum(const aten_value& terms, std::int64_t n) {
    if (n == 0) return 0.0;
    at::Tensor x = terms.constant() ? at::full({n}, terms.s, at::TensorOptions().dtype(at::kDouble))
                                    : terms.t.reshape({-1}).to(at::kDouble);
    const std::int64_t blocks = (n + 63) / 64;
    if (blocks * 64 != n) x = at::cat({x, at::zeros({blocks * 64 - n}, x.options())});
    x = x.view({blocks, 64});
    at::Tensor sums = at::zeros({blocks}, x.options());
    for (std::int64_t i = 0; i < 64; ++i) sums = sums + x.select(1, i);
    while (sums.numel() > 1) { // the pairwise levels
        const std::int64_t count = sums.numel(), pairs = count / 2;
        at::Tensor next = sums.slice(0, 0, 2 * pairs, 2) + sums.slice(0, 1, 2 * pairs, 2);
        sums = count % 2 != 0 ? at::cat({next, sums.slice(0, count - 1, count)}) : next;
    }
    return sums.cpu().item<double>();
}

//! Pass `Pass` of `Rule` over one flat tensor: `param` and `grad` of its
//! parameter type, `state` (`buffers` of them) of the state type S, `keep` a
//! bool tensor on their device or undefined (all kept). The reduce pass returns
//! the rule's sums.
template <class Rule, childtune::detail::element_pass Pass, class S>
std::array<double, childtune::detail::rule_reduction_count<Rule>()>
aten_pass(const typename Rule::template step_constants<S>& c, masking_options masking, const at::Tensor& keep,
          double keep_probability, at::Tensor& param, const at::Tensor& grad, at::Tensor* state, std::size_t buffers) {
    constexpr std::size_t R = childtune::detail::rule_reduction_count<Rule>();
    const at::ScalarType type = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    aten_value p(param.to(type)), g(grad.to(type));
    aten_value s[childtune::detail::rule_state_slots<Rule>()];
    for (std::size_t b = 0; b < childtune::detail::rule_state_slots<Rule>(); ++b)
        s[b] = b < buffers ? aten_value(state[b]) : aten_value(S(0));
    const S kp = static_cast<S>(keep_probability);
    const auto plan = childtune::detail::make_mask_plan(aten_keep(true), aten_keep(false), masking, aten_value(kp), kp != S(1));
    const auto e = plan(keep.defined() ? aten_keep(keep) : aten_keep(true));
    std::array<double, R> sums{};
    if constexpr (Pass == childtune::detail::element_pass::update) {
        Rule::apply(c, e, p, g, s);
        if (!p.t.is_same(param)) param.copy_(p.constant() ? p.on(param).expand_as(param) : p.t);
    } else {
        aten_value terms[R > 0 ? R : 1];
        Rule::reduce(c, e, p, g, s, terms);
        for (std::size_t r = 0; r < R; ++r) sums[r] = canonical_sum(terms[r], param.numel());
    }
    for (std::size_t b = 0; b < buffers; ++b)
        if (s[b].constant() || !s[b].t.is_same(state[b]))
            state[b].copy_(s[b].constant() ? s[b].on(state[b]).expand_as(state[b]) : s[b].t);
    return sums;
}

//! One step of one tensor on the ATen path: the phase (sums and `finish`) when
//! the rule has one, then the update.
template <class Rule, class S>
void aten_step(typename Rule::template step_constants<S> c, masking_options masking, const at::Tensor& keep,
               double keep_probability, at::Tensor& param, const at::Tensor& grad, at::Tensor* state, std::size_t buffers) {
    using childtune::detail::element_pass;
    if constexpr (childtune::detail::rule_reduction_count<Rule>() > 0)
        Rule::finish(c, aten_pass<Rule, element_pass::reduce, S>(c, masking, keep, keep_probability, param, grad, state,
                                                                  buffers));
    (void)aten_pass<Rule, element_pass::update, S>(c, masking, keep, keep_probability, param, grad, state, buffers);
}

} // namespace childtune::torch::detail
