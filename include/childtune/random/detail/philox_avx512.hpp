#pragma once
//! \file
//! AVX-512 keep-word generator (random/detail/philox_keep.hpp gives the
//! definition): the 16 Philox blocks of an element group in one vector of 16
//! lanes, compiled with a per-function target attribute and picked at run time.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/random/detail/philox_avx2.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>

#include <bit>
#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_AVX2_DISPATCH
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

//! Ten rounds of the 16 blocks whose counter words 0 and 1 are x0, x1 (words 2
//! and 3: the tensor key and the step); three-way XORs in one instruction.
__attribute__((target("avx512f"))) CHILDTUNE_ALWAYS_INLINE void philox_rounds_avx512(const philox_keep_params& p, __m512i x0,
                                                                                     __m512i x1, __m512i (&x)[4]) {
    __m512i x2 = _mm512_set1_epi32(static_cast<int>(p.tensor_key));
    __m512i x3 = _mm512_set1_epi32(static_cast<int>(p.step));
    const __m512i m0 = _mm512_set1_epi32(static_cast<int>(philox_m0));
    const __m512i m1 = _mm512_set1_epi32(static_cast<int>(philox_m1));
    std::uint32_t k0 = p.k0, k1 = p.k1;
#pragma GCC unroll 10
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

//! One lane per block: blocks 16·group .. 16·group + 15.
__attribute__((target("avx512f"))) CHILDTUNE_ALWAYS_INLINE void philox_lanes_avx512(const philox_keep_params& p,
                                                                                    std::uint64_t group, __m512i (&x)[4]) {
    const std::uint64_t first = 16 * group;
    philox_rounds_avx512(p,
                         _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))),
                                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
                         _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32))), x);
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

//! Version 3: folds the eight planes of the blocks in x into c_below, c_tied
//! (16 lanes), against threshold bits 31 - 8·level .. 24 - 8·level. Bits above
//! 15 of the lanes are left undefined; callers mask them.
__attribute__((target("avx512f"))) CHILDTUNE_ALWAYS_INLINE void compare_planes_avx512(const __m512i (&x)[4],
                                                                                      std::uint32_t threshold, unsigned level,
                                                                                      __m512i& below, __m512i& tied) {
    constexpr __mmask16 all = 0xFFFF;
#pragma GCC unroll 8
    for (unsigned j = 0; j < 8; ++j) {
        const __m512i plane = j % 2 ? _mm512_maskz_srli_epi32(all, x[j / 2], 16) : x[j / 2];
        if ((threshold >> (31 - 8 * level - j)) & 1u) {
            below = _mm512_ternarylogic_epi32(below, tied, plane, 0xF4); // below | (tied & ~plane)
            tied = _mm512_maskz_and_epi32(all, tied, plane);
        } else {
            tied = _mm512_maskz_andnot_epi32(all, plane, tied);
        }
    }
}

//! Version 3, level 0 of super-group s (plane_first_scalar's result): lane m
//! is block 4·(16s + m); bit k of lane m goes to bit 16·(k % 4) + m of word k / 4.
__attribute__((target("avx512f"))) inline void plane_first_avx512(const philox_keep_params& p, std::uint64_t s,
                                                                  std::uint64_t* four, plane_queue& q,
                                                                  std::uint32_t first_word) {
    constexpr __mmask16 all = 0xFFFF;
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const std::uint64_t block0 = plane_block(s, 0, 0);
    const __m512i lo = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0))),
                                        _mm512_maskz_slli_epi32(all, lanes, 2));
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0 >> 32)));
    __m512i x[4];
    philox_rounds_avx512(p, lo, hi, x);
    __m512i below = _mm512_setzero_si512(), tied = _mm512_set1_epi32(-1);
    compare_planes_avx512(x, p.threshold, 0, below, tied);
    // Lanes to 16 bits (vpmovdw drops the undefined upper bits), then transposed
    // into the four words.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(four), transpose_bits16_avx2(_mm512_maskz_cvtepi32_epi16(all, below)));
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    const __mmask16 queued = _mm512_test_epi32_mask(tied, low16);
    // Packed into the queue by in-register compresses (the memory form is slow
    // on AMD Zen 4), and stored even when no lane is tied: a branch on that
    // (37 % of super-groups) mispredicted about every third one.
    const std::size_t at = q.count;
    _mm512_storeu_si512(q.block_lo + at, _mm512_maskz_compress_epi32(queued, lo));
    _mm512_storeu_si512(q.block_hi + at, hi); // the same in every lane
    _mm512_storeu_si512(q.tied + at, _mm512_maskz_compress_epi32(queued, _mm512_maskz_and_epi32(all, tied, low16)));
    _mm512_storeu_si512(q.place + at, _mm512_maskz_compress_epi32(
                                          queued, _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(16 * first_word)))));
    q.count = at + static_cast<std::size_t>(std::popcount(static_cast<unsigned>(queued)));
}

//! Version 3, level 1 of queue entries e .. e + 15.
__attribute__((target("avx512f"))) inline void plane_level_avx512(const philox_keep_params& p, plane_queue& q,
                                                                  std::size_t e) {
    constexpr __mmask16 all = 0xFFFF;
    __m512i x[4];
    philox_rounds_avx512(p, _mm512_add_epi32(_mm512_loadu_si512(q.block_lo + e), _mm512_set1_epi32(1)),
                         _mm512_loadu_si512(q.block_hi + e), x);
    __m512i below = _mm512_setzero_si512(), tied = _mm512_loadu_si512(q.tied + e);
    compare_planes_avx512(x, p.threshold, 1, below, tied);
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    _mm512_storeu_si512(q.below + e, _mm512_maskz_and_epi32(all, below, low16));
    _mm512_storeu_si512(q.tied + e, _mm512_maskz_and_epi32(all, tied, low16));
}
#endif

} // namespace childtune::detail
