#pragma once
//! \file
//! AVX-512 keep-word generator (random/detail/philox_keep.hpp gives the
//! definition): the 16 Philox blocks of an element group in one vector of 16
//! lanes, compiled with a per-function target attribute and picked at run time.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/random/detail/philox_keep.hpp>

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

} // namespace childtune::detail
