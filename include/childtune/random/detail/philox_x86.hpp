#pragma once
//! \file
//! Vectorised Philox4x32-10 keep bits for the CPU step (x86-64).
//!
//! A Child-Tuning_F step needs one Bernoulli decision per parameter; a scalar
//! generator costs more than the whole memory-bound update, so the CPU computes
//! the 64 decisions of an element group at once: 16 Philox blocks, one per SIMD
//! lane, with SSE2 (part of every x86-64 target), or AVX2 / AVX-512 picked at run
//! time through per-function target attributes, so users need no `-march`.
//!
//! The element layouts (mask/bernoulli.hpp) are chosen for this. Version 1:
//! element i of group g = i / 64 takes output word (i % 64) / 16 of block
//! 16·g + i % 16, so comparing one output word across the 16 lanes yields 16
//! consecutive keep bits with no shuffling. Version 2 (16-bit thresholds): the
//! 16 blocks of group G serve elements 128·G .. 128·G + 127, the low halves of the
//! four words the first 64 and the high halves the next 64, so one Philox batch
//! gives two keep words by the same lane-wise compares. Every variant returns
//! exactly the bits of the scalar definition; the tests compare them.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/exec/dispatch.hpp>
#include <childtune/random/philox.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif
#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

//! Everything a keep word depends on besides the group index.
struct philox_keep_params {
    std::uint32_t k0, k1;     //!< Philox key (the seed)
    std::uint32_t tensor_key; //!< counter word 2
    std::uint32_t step;       //!< counter word 3
    std::uint32_t threshold;  //!< version 1: keep iff the 32-bit draw < threshold (< 2^32);
                              //!< version 2: keep iff the 16-bit half < threshold (< 2^16)
    std::uint32_t version = 1; //!< the mask definition (mask/bernoulli.hpp): 1 or 2
};

//! Philox4x32-10 block `block` of the keep stream (counter {block lo, block hi,
//! tensor key, step}, key = the seed).
inline philox_block philox_keep_block(const philox_keep_params& p, std::uint64_t block) {
    return philox4x32({{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), p.tensor_key, p.step}},
                      {{p.k0, p.k1}});
}

//! Keep bits of elements 64w .. 64w + 63 (bit j for element 64w + j): the
//! definition the vector variants reproduce.
inline std::uint64_t philox_keep_word_scalar(const philox_keep_params& p, std::uint64_t w) {
    std::uint64_t word = 0;
    if (p.version == 1) {
        for (unsigned lane = 0; lane < 16; ++lane) {
            const auto out = philox_keep_block(p, 16 * w + lane);
            for (unsigned j = 0; j < 4; ++j) word |= std::uint64_t{out.w[j] < p.threshold} << (16 * j + lane);
        }
        return word;
    }
    const unsigned half = 16 * static_cast<unsigned>(w & 1); // word w is half w % 2 of group w / 2
    for (unsigned lane = 0; lane < 16; ++lane) {
        const auto out = philox_keep_block(p, 16 * (w >> 1) + lane);
        for (unsigned j = 0; j < 4; ++j)
            word |= std::uint64_t{((out.w[j] >> half) & 0xFFFFu) < p.threshold} << (16 * j + lane);
    }
    return word;
}

#if CHILDTUNE_HAS_SSE2
struct sse2_mulhilo {
    __m128i lo, hi;
};
CHILDTUNE_ALWAYS_INLINE sse2_mulhilo sse2_mul(__m128i a, __m128i m) {
    const __m128i even = _mm_mul_epu32(a, m);
    const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), m);
    const __m128i low_half = _mm_set1_epi64x(0xFFFFFFFF);
    return {_mm_or_si128(_mm_and_si128(even, low_half), _mm_slli_epi64(odd, 32)),
            _mm_or_si128(_mm_srli_epi64(even, 32), _mm_andnot_si128(low_half, odd))};
}

//! The 16 blocks 16g .. 16g + 15 after ten rounds: x[word][quarter], lanes
//! 4·quarter .. 4·quarter + 3.
struct sse2_lanes {
    __m128i x[4][4];
};
CHILDTUNE_ALWAYS_INLINE sse2_lanes philox_lanes_sse2(const philox_keep_params& p, std::uint64_t group) {
    constexpr int groups = 4; // 4 x 4 lanes = the 16 blocks of the element group
    const std::uint64_t first = 16 * group; // a multiple of 16: lo32 + 15 never wraps
    __m128i x0[groups], x1[groups], x2[groups], x3[groups];
    for (int g = 0; g < groups; ++g) {
        x0[g] = _mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))),
                              _mm_setr_epi32(4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3));
        x1[g] = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32)));
        x2[g] = _mm_set1_epi32(static_cast<int>(p.tensor_key));
        x3[g] = _mm_set1_epi32(static_cast<int>(p.step));
    }
    const __m128i m0 = _mm_set1_epi32(static_cast<int>(philox_m0));
    const __m128i m1 = _mm_set1_epi32(static_cast<int>(philox_m1));
    std::uint32_t k0 = p.k0, k1 = p.k1;
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += philox_w0;
            k1 += philox_w1;
        }
        const __m128i vk0 = _mm_set1_epi32(static_cast<int>(k0));
        const __m128i vk1 = _mm_set1_epi32(static_cast<int>(k1));
        for (int g = 0; g < groups; ++g) {
            const sse2_mulhilo a = sse2_mul(x0[g], m0);
            const sse2_mulhilo b = sse2_mul(x2[g], m1);
            x0[g] = _mm_xor_si128(_mm_xor_si128(b.hi, x1[g]), vk0);
            x1[g] = b.lo;
            x2[g] = _mm_xor_si128(_mm_xor_si128(a.hi, x3[g]), vk1);
            x3[g] = a.lo;
        }
    }
    sse2_lanes out;
    for (int g = 0; g < groups; ++g) {
        out.x[0][g] = x0[g];
        out.x[1][g] = x1[g];
        out.x[2][g] = x2[g];
        out.x[3][g] = x3[g];
    }
    return out;
}

//! Bits of `keep` (4 lanes) at 16·j + 4·quarter.
CHILDTUNE_ALWAYS_INLINE std::uint64_t sse2_bits(__m128i keep, int j, int quarter) {
    return std::uint64_t(static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(keep)))) << (16 * j + 4 * quarter);
}

inline std::uint64_t philox_keep_word_sse2(const philox_keep_params& p, std::uint64_t group) {
    const sse2_lanes l = philox_lanes_sse2(p, group);
    // Unsigned x < threshold as a signed compare of both biased by 2^31.
    const __m128i bias = _mm_set1_epi32(static_cast<int>(0x80000000u));
    const __m128i limit = _mm_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < 4; ++g)
        for (int j = 0; j < 4; ++j) word |= sse2_bits(_mm_cmplt_epi32(_mm_xor_si128(l.x[j][g], bias), limit), j, g);
    return word;
}

//! Version 2: keep words 2G (low halves) and 2G + 1 (high halves) of group G.
inline void philox_keep_pair_sse2(const philox_keep_params& p, std::uint64_t group, std::uint64_t* two) {
    const sse2_lanes l = philox_lanes_sse2(p, group);
    const __m128i low = _mm_set1_epi32(0xFFFF);
    const __m128i limit = _mm_set1_epi32(static_cast<int>(p.threshold)); // < 2^16: signed compares suffice
    std::uint64_t lo = 0, hi = 0;
    for (int g = 0; g < 4; ++g)
        for (int j = 0; j < 4; ++j) {
            lo |= sse2_bits(_mm_cmplt_epi32(_mm_and_si128(l.x[j][g], low), limit), j, g);
            hi |= sse2_bits(_mm_cmplt_epi32(_mm_srli_epi32(l.x[j][g], 16), limit), j, g);
        }
    two[0] = lo;
    two[1] = hi;
}
#endif

#if CHILDTUNE_HAS_AVX2_DISPATCH
struct avx2_mulhilo {
    __m256i lo, hi;
};
//! Lane-wise 32x32->64-bit products of `a` and the broadcast `m` as low and high
//! words. In-lane shuffles, not 64-bit shifts, move the halves: shifts share the
//! multiplier's port on Intel cores (p0/p01), which bounds the round; shuffles do not.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_mulhilo avx2_mul(__m256i a, __m256i m) {
    constexpr int swap_halves = 0xB1; // 32-bit lanes 1,0,3,2 of every 128 bits
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_shuffle_epi32(a, swap_halves), m);
    return {_mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, swap_halves), 0xAA),
            _mm256_blend_epi32(_mm256_shuffle_epi32(even, swap_halves), odd, 0xAA)};
}

//! The 16 blocks 16g .. 16g + 15 after ten rounds: x[word][half], lanes 8·half ..
//! 8·half + 7.
struct avx2_lanes {
    __m256i x[4][2];
};
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_lanes philox_lanes_avx2(const philox_keep_params& p,
                                                                                    std::uint64_t group) {
    constexpr int groups = 2; // 2 x 8 lanes
    const std::uint64_t first = 16 * group;
    __m256i x0[groups], x1[groups], x2[groups], x3[groups];
    for (int g = 0; g < groups; ++g) {
        x0[g] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))),
                                 _mm256_setr_epi32(8 * g, 8 * g + 1, 8 * g + 2, 8 * g + 3, 8 * g + 4, 8 * g + 5, 8 * g + 6, 8 * g + 7));
        x1[g] = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32)));
        x2[g] = _mm256_set1_epi32(static_cast<int>(p.tensor_key));
        x3[g] = _mm256_set1_epi32(static_cast<int>(p.step));
    }
    const __m256i m0 = _mm256_set1_epi32(static_cast<int>(philox_m0));
    const __m256i m1 = _mm256_set1_epi32(static_cast<int>(philox_m1));
    std::uint32_t k0 = p.k0, k1 = p.k1;
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += philox_w0;
            k1 += philox_w1;
        }
        const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0));
        const __m256i vk1 = _mm256_set1_epi32(static_cast<int>(k1));
        for (int g = 0; g < groups; ++g) {
            const avx2_mulhilo a = avx2_mul(x0[g], m0);
            const avx2_mulhilo b = avx2_mul(x2[g], m1);
            x0[g] = _mm256_xor_si256(_mm256_xor_si256(b.hi, x1[g]), vk0);
            x1[g] = b.lo;
            x2[g] = _mm256_xor_si256(_mm256_xor_si256(a.hi, x3[g]), vk1);
            x3[g] = a.lo;
        }
    }
    return {{{x0[0], x0[1]}, {x1[0], x1[1]}, {x2[0], x2[1]}, {x3[0], x3[1]}}};
}

//! Bits of `keep` (8 lanes) at 16·j + 8·half.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE std::uint64_t avx2_bits(__m256i keep, int j, int half) {
    return std::uint64_t(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep)))) << (16 * j + 8 * half);
}

__attribute__((target("avx2"))) inline std::uint64_t philox_keep_word_avx2(const philox_keep_params& p,
                                                                            std::uint64_t group) {
    const avx2_lanes l = philox_lanes_avx2(p, group);
    const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < 2; ++g)
        for (int j = 0; j < 4; ++j) // x < threshold
            word |= avx2_bits(_mm256_cmpgt_epi32(limit, _mm256_xor_si256(l.x[j][g], bias)), j, g);
    return word;
}

//! Version 2: keep words 2G (low halves) and 2G + 1 (high halves) of group G.
__attribute__((target("avx2"))) inline void philox_keep_pair_avx2(const philox_keep_params& p, std::uint64_t group,
                                                                   std::uint64_t* two) {
    const avx2_lanes l = philox_lanes_avx2(p, group);
    const __m256i low = _mm256_set1_epi32(0xFFFF);
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(p.threshold)); // < 2^16: signed compares suffice
    std::uint64_t lo = 0, hi = 0;
    for (int g = 0; g < 2; ++g)
        for (int j = 0; j < 4; ++j) {
            lo |= avx2_bits(_mm256_cmpgt_epi32(limit, _mm256_and_si256(l.x[j][g], low)), j, g);
            hi |= avx2_bits(_mm256_cmpgt_epi32(limit, _mm256_srli_epi32(l.x[j][g], 16)), j, g);
        }
    two[0] = lo;
    two[1] = hi;
}

struct avx512_mulhilo {
    __m512i lo, hi;
};
// The zero-masking forms with an all-ones mask are the plain instructions; GCC 12's
// unmasked wrappers trip -Wuninitialized on their "undefined" pass-through operand.
// Shuffles instead of shifts, as avx2_mul.
__attribute__((target("avx512f"))) CHILDTUNE_ALWAYS_INLINE avx512_mulhilo avx512_mul(__m512i a, __m512i m) {
    constexpr __mmask8 all = 0xFF;
    constexpr __mmask16 all32 = 0xFFFF;
    const __m512i even = _mm512_maskz_mul_epu32(all, a, m);
    const __m512i odd = _mm512_maskz_mul_epu32(all, _mm512_maskz_shuffle_epi32(all32, a, _MM_PERM_CDAB), m);
    return {_mm512_mask_blend_epi32(0xAAAA, even, _mm512_maskz_shuffle_epi32(all32, odd, _MM_PERM_CDAB)),
            _mm512_mask_blend_epi32(0xAAAA, _mm512_maskz_shuffle_epi32(all32, even, _MM_PERM_CDAB), odd)};
}

//! One lane per block; three-way XORs in one instruction, unsigned compares into
//! mask registers.
__attribute__((target("avx512f"))) CHILDTUNE_ALWAYS_INLINE void philox_lanes_avx512(const philox_keep_params& p,
                                                                                    std::uint64_t group, __m512i (&x)[4]) {
    const std::uint64_t first = 16 * group;
    __m512i x0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i x1 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32)));
    __m512i x2 = _mm512_set1_epi32(static_cast<int>(p.tensor_key));
    __m512i x3 = _mm512_set1_epi32(static_cast<int>(p.step));
    const __m512i m0 = _mm512_set1_epi32(static_cast<int>(philox_m0));
    const __m512i m1 = _mm512_set1_epi32(static_cast<int>(philox_m1));
    std::uint32_t k0 = p.k0, k1 = p.k1;
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += philox_w0;
            k1 += philox_w1;
        }
        const avx512_mulhilo a = avx512_mul(x0, m0);
        const avx512_mulhilo b = avx512_mul(x2, m1);
        x0 = _mm512_ternarylogic_epi32(b.hi, x1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
        x1 = b.lo;
        x2 = _mm512_ternarylogic_epi32(a.hi, x3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
        x3 = a.lo;
    }
    x[0] = x0;
    x[1] = x1;
    x[2] = x2;
    x[3] = x3;
}

//! One lane per block; three-way XORs in one instruction, unsigned compares into
//! mask registers.
__attribute__((target("avx512f"))) inline std::uint64_t philox_keep_word_avx512(const philox_keep_params& p,
                                                                                std::uint64_t group) {
    __m512i x[4];
    philox_lanes_avx512(p, group, x);
    const __m512i limit = _mm512_set1_epi32(static_cast<int>(p.threshold));
    return std::uint64_t{_mm512_cmplt_epu32_mask(x[0], limit)} | (std::uint64_t{_mm512_cmplt_epu32_mask(x[1], limit)} << 16) |
           (std::uint64_t{_mm512_cmplt_epu32_mask(x[2], limit)} << 32) | (std::uint64_t{_mm512_cmplt_epu32_mask(x[3], limit)} << 48);
}

//! Version 2: keep words 2G (low halves) and 2G + 1 (high halves) of group G.
__attribute__((target("avx512f"))) inline void philox_keep_pair_avx512(const philox_keep_params& p, std::uint64_t group,
                                                                       std::uint64_t* two) {
    constexpr __mmask16 all = 0xFFFF;
    __m512i x[4];
    philox_lanes_avx512(p, group, x);
    const __m512i low = _mm512_set1_epi32(0xFFFF);
    const __m512i limit = _mm512_set1_epi32(static_cast<int>(p.threshold));
    std::uint64_t lo = 0, hi = 0;
    for (int j = 0; j < 4; ++j) {
        lo |= std::uint64_t{_mm512_cmplt_epu32_mask(_mm512_maskz_and_epi32(all, x[j], low), limit)} << (16 * j);
        hi |= std::uint64_t{_mm512_cmplt_epu32_mask(_mm512_maskz_srli_epi32(all, x[j], 16), limit)} << (16 * j);
    }
    two[0] = lo;
    two[1] = hi;
}

#endif

//! Which implementation of the keep-word generator the CPU step uses: the
//! instruction sets of exec/detail/cpu_features.hpp.
using philox_isa = cpu_isa;

inline philox_isa best_philox_isa() { return best_cpu_isa(); }
inline bool philox_isa_available(philox_isa isa) { return cpu_supports(isa); }

//! The keep words of groups first .. first + count - 1, as a kernel for the
//! one instruction-set dispatch (exec/dispatch.hpp). Each instruction set has
//! its own generator above: the 32x32->64-bit multiplies and the compare-to-mask
//! have no generic-vector form that compiles to these instructions (written with
//! GCC's vector extensions the generator ran 2-4x slower under GCC 12).
struct philox_keep_words_kernel {
    static constexpr cpu_isa max_isa = cpu_isa::avx512;
    static constexpr bool scalar_entry = true;

    template <cpu_isa I>
    static std::uint64_t word(const philox_keep_params& p, std::uint64_t w) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
        if constexpr (I == cpu_isa::avx512) return philox_keep_word_avx512(p, w);
        else if constexpr (I == cpu_isa::avx2) return philox_keep_word_avx2(p, w);
        else
#endif
#if CHILDTUNE_HAS_SSE2
        if constexpr (I == cpu_isa::sse2) return philox_keep_word_sse2(p, w);
        else
#endif
            return philox_keep_word_scalar(p, w);
    }
    //! Version 2: words 2G and 2G + 1 from one batch of 16 blocks.
    template <cpu_isa I>
    static void pair(const philox_keep_params& p, std::uint64_t group, std::uint64_t* two) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
        if constexpr (I == cpu_isa::avx512) philox_keep_pair_avx512(p, group, two);
        else if constexpr (I == cpu_isa::avx2) philox_keep_pair_avx2(p, group, two);
        else
#endif
#if CHILDTUNE_HAS_SSE2
        if constexpr (I == cpu_isa::sse2) philox_keep_pair_sse2(p, group, two);
        else
#endif
        {
            two[0] = philox_keep_word_scalar(p, 2 * group);
            two[1] = philox_keep_word_scalar(p, 2 * group + 1);
        }
    }

    template <cpu_isa I>
    static void run(const philox_keep_params* p, std::uint64_t first, std::size_t count, std::uint64_t* out) {
        if (p->version == 1) {
            for (std::size_t k = 0; k < count; ++k) out[k] = word<I>(*p, first + k);
            return;
        }
        for (std::size_t k = 0; k < count;) {
            const std::uint64_t w = first + k;
            std::uint64_t two[2];
            pair<I>(*p, w >> 1, two);
            if ((w & 1) == 0) out[k++] = two[0];
            if (k < count) out[k++] = two[1];
        }
    }
};

//! Keep words of groups first .. first + count - 1 on instruction set `isa`.
inline void philox_keep_words(philox_isa isa, const philox_keep_params& p, std::uint64_t first, std::size_t count,
                              std::uint64_t* out) {
    dispatch<philox_keep_words_kernel>(isa, &p, first, count, out);
}
inline std::uint64_t philox_keep_word(philox_isa isa, const philox_keep_params& p, std::uint64_t group) {
    std::uint64_t word;
    philox_keep_words(isa, p, group, 1, &word);
    return word;
}

} // namespace childtune::detail
