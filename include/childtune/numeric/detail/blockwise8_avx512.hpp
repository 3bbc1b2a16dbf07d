#pragma once
//! \file
//! AVX-512 loops of the 8-bit blockwise state (numeric/blockwise8.hpp), sixteen
//! values at a time. The encoder is the AVX2 one (blockwise8_avx2.hpp) with mask
//! registers for the comparisons and a narrowing store for the codes. The
//! decoder gathers nothing: the 256 values sit in sixteen registers and are
//! selected by permutes, 0.147 ns per value against the gather's 0.41 on Zen 5
//! (a sixteen-lane gather costs about two cycles per lane on AMD Zen 4/5).
//! The same float permutes cannot speed up the encoder: a branch-free binary
//! search over the thresholds held in registers (eight dependent permute-compare
//! levels) measured 0.56-0.58 ns per value against the bucket gather's 0.50.
//! Byte permutes can (VBMI, blockwise8_vbmi.hpp); this encoder serves AVX-512
//! CPUs without VBMI and that encoder's rare ties.
//! Bit-identical to the scalar definition (tests/numeric/blockwise8.cpp
//! compares them).

#include <childtune/config.hpp>
#include <childtune/numeric/detail/blockwise8_avx2.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

CHILDTUNE_AVX512_WARNINGS_BEGIN // _mm512 intrinsics under GCC 12 (config.hpp)

namespace childtune::detail {

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! The largest |x[j]|, NaNs not counted, over the largest multiple k of 64 not
//! above n, folded into `absmax`; returns k. Four running maxima of sixteen
//! lanes, each max(|x|, m), which keeps m for a NaN x (numeric/blockwise8.hpp's
//! block_absmax gives the reasoning; the order of a maximum does not matter).
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline std::size_t
absmax_avx512(const float* x, std::size_t n, float& absmax) {
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    __m512 m0 = _mm512_set1_ps(absmax), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x + i), magnitude)), m0);
        m1 = _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x + i + 16), magnitude)), m1);
        m2 = _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x + i + 32), magnitude)), m2);
        m3 = _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x + i + 48), magnitude)), m3);
    }
    // A tree of maxima across the lanes (a chain of sixteen scalar ones costs their latency).
    const __m512 m = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    const __m256 half = _mm256_max_ps(_mm512_castps512_ps256(m), _mm512_extractf32x8_ps(m, 1));
    const __m128 quarter = _mm_max_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    const __m128 eighth = _mm_max_ps(quarter, _mm_movehl_ps(quarter, quarter));
    absmax = _mm_cvtss_f32(_mm_max_ss(eighth, _mm_shuffle_ps(eighth, eighth, 1)));
    return i;
}

//! A 256-entry float table in sixteen registers, entries [16p, 16p + 16) in
//! part[p]; select_avx512 reads it.
struct table256_avx512 {
    __m512 part[16]; //!< the table, sixteen entries per register
};

//! The table t[0 .. 256) in registers.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline table256_avx512 load_table256_avx512(const float* t) {
    table256_avx512 r;
    for (int q = 0; q < 16; ++q) r.part[q] = _mm512_loadu_ps(t + 16 * q);
    return r;
}

//! Sixteen lanes of the table of 32 << Levels entries in part[0 .. 2 << Levels)
//! (sixteen entries per register), each lane's entry chosen by bits 0 .. 4 +
//! Levels of its index: one two-register permute per pair of registers picks by
//! bits 0-4, then bits 5, 6, ... choose among the pairs. Exact, and no memory
//! access.
template <int Levels>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"), always_inline)) inline __m512
select_avx512(const __m512* part, __m512i index) {
    if constexpr (Levels == 0) {
        return _mm512_permutex2var_ps(part[0], index, part[1]);
    } else {
        constexpr int half = 1 << Levels; // parts in each half
        const __m512 low = select_avx512<Levels - 1>(part, index);
        const __m512 high = select_avx512<Levels - 1>(part + half, index);
        return _mm512_mask_blend_ps(_mm512_test_epi32_mask(index, _mm512_set1_epi32(16 << Levels)), low, high);
    }
}

//! Codes of x[0 .. k) / absmax for the largest multiple k of 16 not above n; returns k.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline std::size_t
encode_block_avx512(const dynamic_map_tables& t, const float* x, std::size_t n, float absmax, std::uint8_t* codes) {
    const __m512 scale = _mm512_set1_ps(absmax);
    const __m512i low15 = _mm512_set1_epi32(0x7fff);
    const __m512i low16 = _mm512_set1_epi32(0xffff);
    const __m512i key_offset = _mm512_set1_epi32(static_cast<int>(t.first_key) - 1);
    const __m512i last_bucket = _mm512_set1_epi32(static_cast<int>(t.buckets) - 1);
    const __m512i negative_half = _mm512_set1_epi32(static_cast<int>(t.buckets));
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i nan_code = _mm512_set1_epi32(255);
    const int* words = reinterpret_cast<const int*>(t.bucket_words);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 ratio = _mm512_div_ps(_mm512_loadu_ps(x + i), scale);
        const __m512i u = _mm512_castps_si512(ratio);
        const __m512i sign = _mm512_srai_epi32(u, 31); // all ones for a negative ratio
        // bucket m = 0 below first_key, else min(key - first_key + 1, buckets - 1)
        const __m512i key = _mm512_and_si512(_mm512_srli_epi32(u, 16), low15);
        const __m512i m = _mm512_min_epi32(_mm512_max_epi32(_mm512_sub_epi32(key, key_offset), _mm512_setzero_si512()),
                                           last_bucket);
        const __m512i word = _mm512_i32gather_epi32(_mm512_add_epi32(m, _mm512_and_si512(sign, negative_half)), words, 4);
        // code = thresholds below the bucket + (the bucket's threshold < ratio)
        const __m512i low = _mm512_and_si512(_mm512_xor_si512(u, sign), low16);
        const __m512i below = _mm512_srli_epi32(word, 16);
        __m512i code = _mm512_mask_add_epi32(below, _mm512_cmpgt_epi32_mask(low, _mm512_and_si512(word, low16)), below, one);
        if (!t.is_signed) { // a positive v never becomes 0
            const __mmask16 lift = _mm512_cmpeq_epi32_mask(code, _mm512_setzero_si512()) &
                                   _mm512_cmp_ps_mask(ratio, _mm512_setzero_ps(), _CMP_GT_OQ);
            code = _mm512_mask_mov_epi32(code, lift, one);
        }
        code = _mm512_mask_mov_epi32(code, _mm512_cmp_ps_mask(ratio, ratio, _CMP_UNORD_Q), nan_code);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(code));
    }
    return i;
}

//! x[j] = values[codes[j]] * absmax for the largest multiple k of 16 not above n;
//! returns k. The values are selected from registers (select_avx512), not gathered.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline std::size_t
decode_block_avx512(const dynamic_map_tables& t, const std::uint8_t* codes, std::size_t n, float absmax, float* x) {
    const table256_avx512 values = load_table256_avx512(t.values);
    const __m512 scale = _mm512_set1_ps(absmax);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i index = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
        _mm512_storeu_ps(x + i, _mm512_mul_ps(select_avx512<3>(values.part, index), scale));
    }
    return i;
}
#endif

} // namespace childtune::detail

CHILDTUNE_AVX512_WARNINGS_END
