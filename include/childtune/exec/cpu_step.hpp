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
//!
//! The loop is written once (step_range_body) and compiled twice on x86-64: for
//! SSE2 (16-byte vectors, every x86-64 CPU) and for AVX2 (32 bytes) through a
//! per-function target attribute; the caller picks one at run time. `flatten`
//! inlines the update rule and the vector operations into it, so they become AVX2
//! instructions. There is no AVX-512 update math on purpose: AVX-512 implies FMA,
//! and GCC's default -ffp-contract=fast would fuse `a*b + c` there and only there,
//! so the result would depend on the CPU. (The Philox keep bits, integer-only, do
//! use AVX-512.)

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/exec/detail/simd.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/state_buffers.hpp>

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

//! Elements [begin, end) of one tensor with value type V (a simd or, on other
//! architectures, the scalar S); `begin` is a multiple of 64 (the keep words are
//! aligned to the tensor start).
template <class Rule, std::size_t Buffers, class V, class S, class P, class MaskView>
CHILDTUNE_ALWAYS_INLINE void step_range_body(const typename Rule::template step_constants<S>& constants,
                                             masking_options options, const MaskView& mask, step_operands<P, S> x,
                                             std::size_t begin, std::size_t end) {
    // A local copy: through the reference, every store to the parameters could
    // alias the constants, and the compiler would reload them for every vector.
    const typename Rule::template step_constants<S> c = constants;
    constexpr std::size_t lanes = sizeof(V) / sizeof(S);
    const S p = static_cast<S>(mask.keep_probability());
    const auto plan = make_mask_plan(lane_mask(static_cast<V*>(nullptr), ~std::uint64_t{0}),
                                     lane_mask(static_cast<V*>(nullptr), 0), options, V(p), p != S(1));
    S* s0 = x.state[0];
    S* s1 = x.state[1];

    for (std::size_t w = begin; w < end; w += 64) {
        const std::size_t n = std::min<std::size_t>(64, end - w);
        std::uint64_t bits = MaskView::is_dense ? ~std::uint64_t{0} : mask.bits64(w);
        std::size_t j = 0;
        for (; j + lanes <= n; j += lanes, bits >>= lanes) {
            const std::size_t i = w + j;
            step_lanes<Rule, Buffers, V>(c, plan(lane_mask(static_cast<V*>(nullptr), bits)), x.param + i, x.grad + i,
                                         s0 + (Buffers > 0 ? i : 0), s1 + (Buffers > 1 ? i : 0));
        }
        if (j < n) { // ragged end: same lane arithmetic on a zero-padded copy
            const std::size_t i = w + j, r = n - j;
            P tp[lanes] = {}, tg[lanes] = {};
            S t0[lanes] = {}, t1[lanes] = {};
            std::copy_n(x.param + i, r, tp);
            std::copy_n(x.grad + i, r, tg);
            if constexpr (Buffers > 0) std::copy_n(s0 + i, r, t0);
            if constexpr (Buffers > 1) std::copy_n(s1 + i, r, t1);
            step_lanes<Rule, Buffers, V>(c, plan(lane_mask(static_cast<V*>(nullptr), bits)), tp, tg, t0, t1);
            std::copy_n(tp, r, x.param + i);
            if constexpr (Buffers > 0) std::copy_n(t0, r, s0 + i);
            if constexpr (Buffers > 1) std::copy_n(t1, r, s1 + i);
        }
    }
}

// ---- one entry point per instruction set -------------------------------------------

#if CHILDTUNE_HAS_SSE2
template <class Rule, std::size_t Buffers, class S, class P, class MaskView>
void step_range_sse2(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                     step_operands<P, S> x, std::size_t begin, std::size_t end) {
    step_range_body<Rule, Buffers, simd_of<S, 16>>(c, options, mask, x, begin, end);
}
#if CHILDTUNE_HAS_AVX2_DISPATCH
template <class Rule, std::size_t Buffers, class S, class P, class MaskView>
__attribute__((target("avx2"), flatten)) void step_range_avx2(const typename Rule::template step_constants<S>& c,
                                                              masking_options options, const MaskView& mask,
                                                              step_operands<P, S> x, std::size_t begin, std::size_t end) {
    step_range_body<Rule, Buffers, simd_of<S, 32>>(c, options, mask, x, begin, end);
}
#endif
#endif

//! Whether a rule promises to inline `apply` (CHILDTUNE_HD_INLINE). Only such
//! rules run the AVX2 kernel: an out-of-line `apply` compiled without AVX would
//! receive 32-byte vectors differently from how the AVX2 caller passes them.
template <class Rule>
constexpr bool inlines_apply() {
    if constexpr (requires { Rule::inline_apply; }) return Rule::inline_apply;
    else return false;
}

template <class Rule, std::size_t Buffers, class S, class P, class MaskView>
void step_range_isa(cpu_isa isa, const typename Rule::template step_constants<S>& c, masking_options options,
                    const MaskView& mask, step_operands<P, S> x, std::size_t begin, std::size_t end) {
    if (!inlines_apply<Rule>() && isa > cpu_isa::sse2) isa = cpu_isa::sse2;
    switch (isa) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    case cpu_isa::avx512: // see the file comment: the update math stops at AVX2
    case cpu_isa::avx2:
        if constexpr (inlines_apply<Rule>()) {
            step_range_avx2<Rule, Buffers>(c, options, mask, x, begin, end);
            return;
        }
        [[fallthrough]];
#endif
#if CHILDTUNE_HAS_SSE2
    case cpu_isa::sse2: step_range_sse2<Rule, Buffers>(c, options, mask, x, begin, end); return;
#endif
    default: step_range_body<Rule, Buffers, S>(c, options, mask, x, begin, end); return;
    }
}

//! Runs the fused step of `Rule` over elements [begin, end) of one tensor with
//! `buffers` state buffers in use, on instruction set `isa` (which the CPU must
//! support; see best_cpu_isa).
template <class Rule, class S, class P, class MaskView>
void cpu_step_range(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                    step_operands<P, S> x, std::size_t buffers, std::size_t begin, std::size_t end,
                    cpu_isa isa = best_cpu_isa()) {
    (void)with_state_buffers<Rule>(buffers, [&](auto count) {
        step_range_isa<Rule, decltype(count)::value>(isa, c, options, mask, x, begin, end);
    });
}

} // namespace childtune::detail
