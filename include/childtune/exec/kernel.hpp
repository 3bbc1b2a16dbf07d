#pragma once
//! \file
//! The CPU element pass, written once: mask + rule + state in one sweep over a
//! range of one tensor, for every instruction set, both state layouts and both
//! passes of a rule.
//!
//! Each element is read once (param, grad, state) and written once (param,
//! state): 28 bytes per parameter for fp32 AdamW. Keep decisions arrive as one
//! 64-bit word per 64 elements (from Bernoulli draws, a packed mask or another policy;
//! none for dense groups), so no mask is materialised. A word that keeps all 64
//! elements runs the rule with the compile-time lane mask `all_lanes`
//! (numeric/lanes.hpp), whose selects fold away: dense steps pay nothing for
//! masking. The ragged end of a range
//! runs the same lane arithmetic on a zero-padded copy, which makes every
//! element's result independent of how ranges are split across threads.
//!
//! State layouts (the storage policy of exec/state_layout.hpp), chosen per tensor
//! at run time, one branch per 64 elements:
//! - full: state buffer b holds every element;
//! - compact Child-Tuning_D: only the kept elements of a fixed mask, in order;
//!   each word's state is expanded into a 64-element scratch block (zeros for the
//!   masked elements), the word is stepped as in the full layout, and the kept
//!   elements' state is compressed back (in vector lanes in the AVX2 and
//!   AVX-512 kernels, with AVX-512 moves where the CPU has them:
//!   exec/detail/compact_moves.hpp). The
//!   arithmetic is the full layout's on the same inputs, so results are
//!   bit-identical (tested).
//!
//! Passes: `update` runs the rule's `apply`. Rules with a per-tensor phase
//! (update_rule::reduction_count > 0, e.g. LAMB's trust ratio) first run a
//! `reduce` pass: the rule's `reduce` updates the state and yields per-element
//! terms, summed per 64-element block in element order in double precision
//! (exec/tensor_sum.hpp combines the blocks), before any parameter changes.
//!
//! The pass is a template over the vector type (exec/dispatch.hpp compiles it
//! for scalar, SSE2, AVX2 and AVX-512). AVX-512 implies FMA, and GCC's default
//! -ffp-contract=fast would fuse `a*b + c` there and only there, so results
//! would depend on the CPU: the AVX-512 entry turns contraction off
//! (exec/dispatch.hpp), and tests/exec/cpu_step.cpp compares every instruction
//! set with the scalar definition bit for bit. (Until 2026-12-04 the update math
//! stopped at AVX2 for that reason; on AMD Zen 5 the AVX-512 step is 1.7x faster
//! in cache, docs/benchmarks.md.)

#include <childtune/config.hpp>
#include <childtune/exec/detail/compact_moves.hpp>
#include <childtune/exec/detail/simd.hpp>
#include <childtune/exec/dispatch.hpp>
#include <childtune/random/detail/philox_x86.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace childtune::detail {

//! Raw pointers of one tensor's range: parameters, gradients and the state buffers.
template <class P, class S>
struct step_operands {
    P* param;
    const P* grad;
    S* state[max_rule_state_buffers];
};

enum class element_pass : std::uint8_t { update, reduce };

//! What a pass over [begin, end) reads besides the operands. `words[k]` holds the
//! keep bits of elements begin + 64k ... begin + 64k + 63 (null: every element
//! kept); `kept_before` (compact layout only, else null) counts the kept elements
//! before each 64-element word of the tensor; `block_sums` (reduce pass) receives
//! Rule::reduction_count sums per 64-element block of the range.
template <class Rule, class S>
struct pass_arguments {
    const typename Rule::template step_constants<S>* constants;
    masking_options masking;
    S keep_probability;
    const std::uint64_t* words;
    const std::uint32_t* kept_before;
    double* block_sums;
    //! Child-Tuning_F drawn in the pass instead of `words` (when not null): the
    //! keep bits of elements begin + 64k ... are Bernoulli keep word first_word + k
    //! (first_word even; random/detail/philox_keep.hpp).
    const philox_keep_params* draws = nullptr;
    std::uint64_t first_word = 0;
};

//! The vector type kernels use for state type S on instruction set I.
template <class S, cpu_isa I>
struct vector_for {
#if CHILDTUNE_HAS_SSE2
    using type = std::conditional_t<I == cpu_isa::scalar, S, simd_of<S, I >= cpu_isa::avx512 ? 64 : I >= cpu_isa::avx2 ? 32 : 16>>;
#else
    using type = S;
#endif
};

//! Whether the compact layout's expand and compress run in vector lanes
//! (exec/detail/compact_moves.hpp): float state in the AVX2 and AVX-512 kernels,
//! which call the AVX-512 moves where the CPU has them.
template <class V, class S>
constexpr bool compact_moves_in_lanes() {
    return CHILDTUNE_HAS_AVX2_DISPATCH && std::is_same_v<S, float> && sizeof(V) >= 32;
}

//! blocks[64 b .. 64 b + 64) = the kept state of word `bits` (from state[b] +
//! first_kept, contiguous), 0 elsewhere, for b < buffers; `avx512`: the CPU has it.
template <class V, class S>
CHILDTUNE_ALWAYS_INLINE void expand_kept_state(S* const* state, std::size_t buffers, std::size_t first_kept,
                                               std::uint64_t bits, S* blocks, bool avx512) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if constexpr (compact_moves_in_lanes<V, S>()) {
        const float* kept[max_rule_state_buffers] = {};
        for (std::size_t b = 0; b < buffers; ++b) kept[b] = state[b] + first_kept;
        if (avx512) expand_words_avx512(kept, buffers, bits, blocks);
        else
            for (std::size_t b = 0; b < buffers; ++b) expand_word_avx2(kept[b], bits, blocks + 64 * b);
        return;
    }
#endif
    (void)avx512;
    for (std::size_t b = 0; b < buffers; ++b) {
        S* const block = blocks + 64 * b;
        const S* kept = state[b] + first_kept;
        std::fill_n(block, 64, S(0));
        for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1) block[std::countr_zero(rest)] = *kept++;
    }
}

//! The inverse: the lanes of each block kept by `bits`, in order, to state[b] + first_kept.
template <class V, class S>
CHILDTUNE_ALWAYS_INLINE void compress_kept_state(const S* blocks, std::size_t buffers, std::uint64_t bits, S* const* state,
                                                 std::size_t first_kept, bool avx512) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if constexpr (compact_moves_in_lanes<V, S>()) {
        float* kept[max_rule_state_buffers] = {};
        for (std::size_t b = 0; b < buffers; ++b) kept[b] = state[b] + first_kept;
        if (avx512) compress_words_avx512(blocks, buffers, bits, kept);
        else
            for (std::size_t b = 0; b < buffers; ++b) compress_word_avx2(blocks + 64 * b, bits, kept[b]);
        return;
    }
#endif
    (void)avx512;
    for (std::size_t b = 0; b < buffers; ++b) {
        const S* const block = blocks + 64 * b;
        S* kept = state[b] + first_kept;
        for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1) *kept++ = block[std::countr_zero(rest)];
    }
}

template <class Rule, element_pass Pass, std::size_t Buffers, class V, class K, class S, class P>
CHILDTUNE_ALWAYS_INLINE void step_lanes(const typename Rule::template step_constants<S>& c, const element_mask<K, V>& e,
                                        P* param, const P* grad, S* const* s, std::size_t i,
                                        S* terms, std::size_t term_stride) {
    V p = load(static_cast<V*>(nullptr), param + i);
    const V g = load(static_cast<V*>(nullptr), grad + i);
    V state[rule_state_slots<Rule>()] = {};
    for (std::size_t b = 0; b != Buffers; ++b) state[b] = load(static_cast<V*>(nullptr), s[b] + i);
    if constexpr (Pass == element_pass::update) {
        Rule::apply(c, e, p, g, state);
        store(param + i, p);
    } else {
        V t[rule_reduction_count<Rule>()];
        Rule::reduce(c, e, p, g, state, t);
        for (std::size_t r = 0; r < rule_reduction_count<Rule>(); ++r) store(terms + r * term_stride + i, t[r]);
    }
    for (std::size_t b = 0; b != Buffers; ++b) store(s[b] + i, state[b]);
}

//! The instruction set whose registers V fills.
template <class V>
inline constexpr cpu_isa isa_of_vector = std::is_arithmetic_v<V> ? cpu_isa::scalar
                                         : sizeof(V) == 64       ? cpu_isa::avx512
                                         : sizeof(V) == 32       ? cpu_isa::avx2
                                                                 : cpu_isa::sse2;

//! Keep words `word` .. `word` + count - 1 drawn with the generator of the
//! instruction set whose registers V fills (definition 3 out of line: the pass
//! draws its words this way once, and later chunks super-group by super-group).
template <class V>
CHILDTUNE_ALWAYS_INLINE void draw_words(const philox_keep_params& p, std::uint64_t word, std::size_t count, std::uint64_t* out) {
    if (keeps_by_planes(p.version)) philox_keep_words_kernel::plane_words_once<isa_of_vector<V>>(p, word, count, out);
    else philox_keep_words_kernel::batches<isa_of_vector<V>>(p, word, count, out);
}
//! Definitions 3 and 4: the first pass that draws level 0 of a super-group
//! into its four keep words and queues its tied lanes for finish_plane_queue,
//! on the instruction set whose registers V fill (a call per super-group).
template <class V>
CHILDTUNE_ALWAYS_INLINE philox_keep_words_kernel::first_pass plane_first_pass(const philox_keep_params& p) {
    return philox_keep_words_kernel::first_pass_of<isa_of_vector<V>>(p);
}
template <class V>
CHILDTUNE_ALWAYS_INLINE void finish_plane_queue(const philox_keep_params& p, plane_queue& queue, std::uint64_t* chunk) {
    philox_keep_words_kernel::plane_finish_queue<isa_of_vector<V>>(p, queue, chunk);
}

//! Keep words the pass draws at a time: a batch of definition 2 (two words), or
//! a chunk of definition 3's super-groups (random/detail/philox_planes.hpp),
//! whose tied lanes share their second pass.
inline std::size_t pass_draw_words(const philox_keep_params& p) { return keeps_by_planes(p.version) ? 4 * plane_chunk : 2; }
inline constexpr std::size_t max_pass_draw_words = 4 * plane_chunk;

//! The pass over elements [begin, end) of one tensor; `begin` is a multiple of 64.
//! (Loops over the Buffers and reductions count with != : both can be 0, and
//! nvcc's front end rejects `b < 0` as a pointless comparison under -Werror.)
template <class Rule, element_pass Pass, std::size_t Buffers, class V, class S, class P>
CHILDTUNE_ALWAYS_INLINE void run_element_pass(const pass_arguments<Rule, S>& a, step_operands<P, S> x,
                                              std::size_t begin, std::size_t end) {
    // A local copy: through the pointer, every store to the parameters could
    // alias the constants, and the compiler would reload them for every vector.
    const typename Rule::template step_constants<S> c = *a.constants;
    constexpr std::size_t lanes = sizeof(V) / sizeof(S);
    constexpr std::size_t reductions = Pass == element_pass::reduce ? rule_reduction_count<Rule>() : 0;
    const auto plan = make_mask_plan(lane_mask(static_cast<V*>(nullptr), ~std::uint64_t{0}),
                                     lane_mask(static_cast<V*>(nullptr), 0), a.masking, V(a.keep_probability),
                                     a.keep_probability != S(1));
    alignas(64) S scratch[Buffers > 0 ? Buffers : 1][64];
    alignas(64) S terms[reductions > 0 ? reductions : 1][64];
    const bool default_masking = a.masking == masking_options{};
    const bool avx512_moves = compact_moves_in_lanes<V, S>() && a.kept_before && best_cpu_isa() >= cpu_isa::avx512;

    // Draws in the pass: the keep words of the next chunk (pass_draw_words) are
    // drawn while the current one is stepped (definition 2: in one go at its
    // start; definition 3: a super-group per four words), so the out-of-order
    // core runs the generator's integer rounds beside the update's divisions and
    // square roots rather than in a phase of their own (docs/benchmarks.md
    // measures both).
    alignas(64) std::uint64_t draw_buffers[2][max_pass_draw_words];
    std::uint64_t* drawn = draw_buffers[0];
    std::uint64_t* ahead = draw_buffers[1];
    const std::size_t chunk = a.draws ? pass_draw_words(*a.draws) : 1; // a power of two
    const std::size_t words_in_range = (end - begin + 63) / 64;
    const bool planes = a.draws && keeps_by_planes(a.draws->version);
    plane_queue queue;
    const philox_keep_words_kernel::first_pass draw_first = planes ? plane_first_pass<V>(*a.draws) : nullptr;
    if (a.draws) draw_words<V>(*a.draws, a.first_word, std::min(chunk, words_in_range), drawn);

    for (std::size_t w = begin; w < end; w += 64) {
        const std::size_t n = std::min<std::size_t>(64, end - w);
        const std::size_t k = (w - begin) / 64;
        std::uint64_t bits = ~std::uint64_t{0};
        if (a.draws) {
            const std::size_t r = k & (chunk - 1);
            const std::size_t next = k - r + chunk; // the next chunk's first word
            if (next < words_in_range) {
                if (!planes) {
                    if (r == 0) draw_words<V>(*a.draws, a.first_word + next, std::min(chunk, words_in_range - next), ahead);
                } else if (r % 4 == 0 && next + r < words_in_range) {
                    // Definitions 3 and 4: the next chunk's super-group r / 4 while these
                    // four words are stepped, and its queue finished at the end of this chunk.
                    draw_first(*a.draws, (a.first_word + next + r) / 4, ahead + r, queue, static_cast<std::uint32_t>(r));
                }
                if (planes && r == chunk - 1) finish_plane_queue<V>(*a.draws, queue, ahead);
            }
            bits = drawn[r];
            if (r == chunk - 1) std::swap(drawn, ahead);
        } else if (a.words) {
            bits = a.words[k];
        }
        // The state window of this word: the buffers themselves, or (compact) a
        // scratch block holding the kept elements' state at their positions.
        S* s[max_rule_state_buffers] = {};
        if (a.kept_before) {
            expand_kept_state<V>(x.state, Buffers, a.kept_before[w / 64], bits, &scratch[0][0], avx512_moves);
            for (std::size_t b = 0; b != Buffers; ++b) s[b] = scratch[b];
        } else {
            for (std::size_t b = 0; b != Buffers; ++b) s[b] = x.state[b] + w;
        }
        P* const param = x.param + w;
        const P* const grad = x.grad + w;

        std::size_t j = 0;
        // Every element kept: the rule runs without selects. Under the default
        // masking options, only the gradient's select remains. (In the wide
        // kernels only: the SSE2 one serves CPUs without AVX2, and each copy of
        // the loop costs every program compile time.)
        bool stepped = false;
        if constexpr (sizeof(V) >= 32) {
            if (bits == ~std::uint64_t{0}) {
                const auto all = plan.all_kept(all_lanes{});
                for (; j + lanes <= n; j += lanes)
                    step_lanes<Rule, Pass, Buffers, V>(c, all, param, grad, s, j, &terms[0][0], 64);
                stepped = true;
            } else if (default_masking) {
                // The update and decay selects fold away: a tenth of a masked
                // AVX2 step in cache (docs/benchmarks.md).
                const auto all = lane_mask(static_cast<V*>(nullptr), ~std::uint64_t{0});
                for (; j + lanes <= n; j += lanes, bits >>= lanes)
                    step_lanes<Rule, Pass, Buffers, V>(c, plan.gradient_only(lane_mask(static_cast<V*>(nullptr), bits), all),
                                                       param, grad, s, j, &terms[0][0], 64);
                stepped = true;
            }
        }
        if (!stepped)
            for (; j + lanes <= n; j += lanes, bits >>= lanes)
                step_lanes<Rule, Pass, Buffers, V>(c, plan(lane_mask(static_cast<V*>(nullptr), bits)), param, grad, s, j,
                                                   &terms[0][0], 64);
        // Ragged end: the same lane arithmetic on a zero-padded copy. One lane
        // never has one, and saying so keeps GCC 13 from warning that r elements
        // overflow a one-element copy (-Wstringop-overflow).
        if (lanes > 1 && j < n) {
            const std::size_t r = n - j;
            P tp[lanes] = {}, tg[lanes] = {};
            S ts[max_rule_state_buffers][lanes] = {};
            S tt[reductions > 0 ? reductions : 1][lanes] = {};
            std::copy_n(param + j, r, tp);
            std::copy_n(grad + j, r, tg);
            S* padded[max_rule_state_buffers] = {};
            for (std::size_t b = 0; b != Buffers; ++b) {
                std::copy_n(s[b] + j, r, ts[b]);
                padded[b] = ts[b];
            }
            step_lanes<Rule, Pass, Buffers, V>(c, plan(lane_mask(static_cast<V*>(nullptr), bits)), tp, tg, padded, 0,
                                               &tt[0][0], lanes);
            if constexpr (Pass == element_pass::update) std::copy_n(tp, r, param + j);
            for (std::size_t b = 0; b != Buffers; ++b) std::copy_n(ts[b], r, s[b] + j);
            for (std::size_t q = 0; q != reductions; ++q) std::copy_n(tt[q], r, terms[q] + j);
        }

        if (a.kept_before) {
            const std::uint64_t kept = a.words ? a.words[(w - begin) / 64] : ~std::uint64_t{0};
            compress_kept_state<V>(&scratch[0][0], Buffers, kept, x.state, a.kept_before[w / 64], avx512_moves);
        }
        for (std::size_t q = 0; q != reductions; ++q) { // the block's sums, in element order
            double sum = 0.0;
            for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(terms[q][i]);
            a.block_sums[(w - begin) / 64 * reductions + q] = sum;
        }
    }
}

//! The element pass as a dispatchable kernel (exec/dispatch.hpp). Rules that do
//! not promise to inline `apply` stop at SSE2: an out-of-line `apply` compiled
//! without AVX would receive 32-byte vectors differently from how an AVX2
//! caller passes them. So does a state type other than the parameters' own
//! precision (float state for double parameters or the reverse, chosen with
//! optimizer_options::precision): a rare set-up, which is not worth a second
//! wide kernel in every program's compile time.
template <class Rule, element_pass Pass, std::size_t Buffers, class S, class P>
struct element_pass_kernel {
    static constexpr bool natural_state = std::is_same_v<S, double> == std::is_same_v<P, double>;
    static constexpr cpu_isa max_isa = inlines_apply<Rule>() && natural_state ? cpu_isa::avx512 : cpu_isa::sse2;

    template <cpu_isa I>
    static void run(const pass_arguments<Rule, S>* a, step_operands<P, S> x, std::size_t begin, std::size_t end) {
        run_element_pass<Rule, Pass, Buffers, typename vector_for<S, I>::type, S, P>(*a, x, begin, end);
    }
};

//! Runs pass `Pass` of `Rule` over elements [begin, end) of one tensor with
//! `buffers` state buffers in use, on instruction set `isa` (supported by the CPU).
template <class Rule, element_pass Pass, class S, class P>
void cpu_element_pass(cpu_isa isa, const pass_arguments<Rule, S>& a, step_operands<P, S> x, std::size_t buffers,
                      std::size_t begin, std::size_t end) {
    (void)with_state_buffers<Rule>(buffers, [&](auto count) {
        dispatch<element_pass_kernel<Rule, Pass, decltype(count)::value, S, P>>(isa, &a, x, begin, end);
    });
}

} // namespace childtune::detail
