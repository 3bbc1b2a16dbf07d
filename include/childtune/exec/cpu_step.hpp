#pragma once
//! \file
//! The fused CPU step: mask + moments + parameter update in one pass over a
//! range of one tensor.
//!
//! Each element is read once (param, grad, state) and written once (param,
//! state): 28 bytes per parameter for fp32 AdamW. Keep decisions arrive 64 at a
//! time as a word of bits (computed by Philox, read from a packed mask, or all
//! ones), so no mask is ever materialised. The same lane arithmetic handles the
//! ragged end of a range through a padded copy, which makes every element's result
//! independent of how ranges are split across threads.

#include <childtune/config.hpp>
#include <childtune/exec/detail/simd.hpp>
#include <childtune/update/masking.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! Raw pointers of one tensor's slice: parameters, gradients and up to two state buffers.
template <class P, class S>
struct step_operands {
    P* param;
    const P* grad;
    S* state[2];
};

#if CHILDTUNE_HAS_SSE2
template <class S>
using cpu_vector = sse2_vector<S>;
#else
template <class S>
using cpu_vector = S;
#endif

template <class Rule, std::size_t Buffers, class V, class K, class S, class P>
CHILDTUNE_ALWAYS_INLINE void step_lanes(const typename Rule::template step_constants<S>& c,
                                        const element_mask<K, V>& e, P* param, const P* grad, S* s0, S* s1) {
    V p = load(static_cast<V*>(nullptr), param);
    const V g = load(static_cast<V*>(nullptr), grad);
    V state[2] = {V(S(0)), V(S(0))};
    if constexpr (Buffers > 0) state[0] = load(static_cast<V*>(nullptr), s0);
    if constexpr (Buffers > 1) state[1] = load(static_cast<V*>(nullptr), s1);
    Rule::apply(c, e, p, g, state);
    store(param, p);
    if constexpr (Buffers > 0) store(s0, state[0]);
    if constexpr (Buffers > 1) store(s1, state[1]);
}

//! Elements [begin, end) of one tensor; `begin` is a multiple of 64 (the keep
//! words are aligned to the tensor start).
template <class Rule, std::size_t Buffers, class S, class P, class MaskView>
void cpu_step_range_n(const typename Rule::template step_constants<S>& c, masking_options options,
                      const MaskView& mask, step_operands<P, S> x, std::size_t begin, std::size_t end) {
    using V = cpu_vector<S>;
    using K = decltype(lane_mask(static_cast<V*>(nullptr), 0));
    constexpr std::size_t lanes = sizeof(V) / sizeof(S);
    const K all = lane_mask(static_cast<V*>(nullptr), ~std::uint64_t{0});
    const K none = lane_mask(static_cast<V*>(nullptr), 0);
    const S p = static_cast<S>(mask.keep_probability());
    const V keep_probability = V(p);
    const bool rescales = p != S(1);
    S* s0 = x.state[0];
    S* s1 = x.state[1];

    for (std::size_t w = begin; w < end; w += 64) {
        const std::size_t n = std::min<std::size_t>(64, end - w);
        std::uint64_t bits = MaskView::is_dense ? ~std::uint64_t{0} : mask.bits64(w);
        std::size_t j = 0;
        for (; j + lanes <= n; j += lanes, bits >>= lanes) {
            const std::size_t i = w + j;
            const auto e = make_element_mask(lane_mask(static_cast<V*>(nullptr), bits), all, none, options, keep_probability, rescales);
            step_lanes<Rule, Buffers, V>(c, e, x.param + i, x.grad + i, s0 + (Buffers > 0 ? i : 0), s1 + (Buffers > 1 ? i : 0));
        }
        if (j < n) { // ragged end: same lane arithmetic on a zero-padded copy
            const std::size_t i = w + j, r = n - j;
            P tp[lanes] = {}, tg[lanes] = {};
            S t0[lanes] = {}, t1[lanes] = {};
            std::copy_n(x.param + i, r, tp);
            std::copy_n(x.grad + i, r, tg);
            if constexpr (Buffers > 0) std::copy_n(s0 + i, r, t0);
            if constexpr (Buffers > 1) std::copy_n(s1 + i, r, t1);
            const auto e = make_element_mask(lane_mask(static_cast<V*>(nullptr), bits), all, none, options, keep_probability, rescales);
            step_lanes<Rule, Buffers, V>(c, e, tp, tg, t0, t1);
            std::copy_n(tp, r, x.param + i);
            if constexpr (Buffers > 0) std::copy_n(t0, r, s0 + i);
            if constexpr (Buffers > 1) std::copy_n(t1, r, s1 + i);
        }
    }
}

//! Runs the fused step of `Rule` over elements [begin, end) of one tensor with
//! `buffers` state buffers in use (0, 1 or 2).
template <class Rule, class S, class P, class MaskView>
void cpu_step_range(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                    step_operands<P, S> x, std::size_t buffers, std::size_t begin, std::size_t end) {
    switch (buffers) {
    case 0: cpu_step_range_n<Rule, 0>(c, options, mask, x, begin, end); break;
    case 1: cpu_step_range_n<Rule, 1>(c, options, mask, x, begin, end); break;
    default: cpu_step_range_n<Rule, 2>(c, options, mask, x, begin, end); break;
    }
}

} // namespace childtune::detail
