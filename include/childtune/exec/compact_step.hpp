#pragma once
//! \file
//! The fused CPU step with compact Child-Tuning_D state: optimizer state is kept
//! for the elements a fixed mask keeps, and for nothing else.
//!
//! Under a fixed mask that multiplies the gradient (the reference), a masked-out
//! element never sees a gradient, so its moments stay exactly zero for the whole
//! run; storing them is waste (8 of the 28 bytes per fp32 AdamW parameter are
//! zeros for 1 - p_D of the parameters). Here the kept elements' state is stored
//! contiguously in mask order; `kept_before[w]` counts the kept elements before
//! 64-element word w, so a word's state starts there.
//!
//! Each word's state is expanded into a 64-element scratch block (zeros for the
//! masked elements), the ordinary step runs on the word, and the kept elements'
//! state is compressed back. The arithmetic is therefore the full-state step's,
//! on the same inputs: results are bit-identical to it (tested). Which rules and
//! options make masked moments stay zero is the rule's to say
//! (`compact_state_exact`).

#include <childtune/config.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/update/masking.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! The keep bits of one 64-element word, as a mask view for the step body.
struct word_view {
    static constexpr bool is_dense = false;
    std::uint64_t bits;
    CHILDTUNE_HD bool keep(std::uint64_t i) const { return (bits >> i) & 1u; }
    std::uint64_t bits64(std::uint64_t first) const { return first >= 64 ? 0 : bits >> first; }
    CHILDTUNE_HD double keep_probability() const { return 1.0; }
};

//! Elements [begin, end) of one tensor (begin a multiple of 64): `words` are the
//! fixed mask's packed words and `kept_before` their prefix counts; `x.state`
//! points at the compact state buffers.
template <class Rule, std::size_t Buffers, class V, class S, class P>
CHILDTUNE_ALWAYS_INLINE void compact_range_body(const typename Rule::template step_constants<S>& c,
                                                masking_options options, const std::uint64_t* words,
                                                const std::uint32_t* kept_before, step_operands<P, S> x,
                                                std::size_t begin, std::size_t end) {
    for (std::size_t w = begin; w < end; w += 64) {
        const std::size_t n = std::min<std::size_t>(64, end - w);
        const std::uint64_t bits = words[w / 64];
        const std::size_t first = kept_before[w / 64];
        alignas(64) S scratch[2][64] = {};
        for (std::size_t b = 0; b < Buffers; ++b) {
            std::size_t k = first;
            for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1)
                scratch[b][std::countr_zero(rest)] = x.state[b][k++];
        }
        step_range_body<Rule, Buffers, V>(c, options, word_view{bits},
                                          step_operands<P, S>{x.param + w, x.grad + w, {scratch[0], scratch[1]}}, 0, n);
        for (std::size_t b = 0; b < Buffers; ++b) {
            std::size_t k = first;
            for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1)
                x.state[b][k++] = scratch[b][std::countr_zero(rest)];
        }
    }
}

#if CHILDTUNE_HAS_SSE2
template <class Rule, std::size_t Buffers, class S, class P>
void compact_range_sse2(const typename Rule::template step_constants<S>& c, masking_options options,
                        const std::uint64_t* words, const std::uint32_t* kept_before, step_operands<P, S> x,
                        std::size_t begin, std::size_t end) {
    compact_range_body<Rule, Buffers, simd_of<S, 16>>(c, options, words, kept_before, x, begin, end);
}
#if CHILDTUNE_HAS_AVX2_DISPATCH
template <class Rule, std::size_t Buffers, class S, class P>
__attribute__((target("avx2"), flatten)) void compact_range_avx2(const typename Rule::template step_constants<S>& c,
                                                                 masking_options options, const std::uint64_t* words,
                                                                 const std::uint32_t* kept_before,
                                                                 step_operands<P, S> x, std::size_t begin,
                                                                 std::size_t end) {
    compact_range_body<Rule, Buffers, simd_of<S, 32>>(c, options, words, kept_before, x, begin, end);
}
#endif
#endif

//! Runs the fused step with compact state over elements [begin, end) of one
//! tensor; the rule uses `Rule::max_state_buffers` buffers.
template <class Rule, class S, class P>
void cpu_compact_step_range(const typename Rule::template step_constants<S>& c, masking_options options,
                            const std::uint64_t* words, const std::uint32_t* kept_before, step_operands<P, S> x,
                            std::size_t begin, std::size_t end, [[maybe_unused]] cpu_isa isa = best_cpu_isa()) {
    constexpr std::size_t buffers = Rule::max_state_buffers;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if constexpr (inlines_apply<Rule>())
        if (isa >= cpu_isa::avx2) return compact_range_avx2<Rule, buffers>(c, options, words, kept_before, x, begin, end);
#endif
#if CHILDTUNE_HAS_SSE2
    if (isa >= cpu_isa::sse2) return compact_range_sse2<Rule, buffers>(c, options, words, kept_before, x, begin, end);
#endif
    compact_range_body<Rule, buffers, S>(c, options, words, kept_before, x, begin, end);
}

} // namespace childtune::detail
