#pragma once
//! \file
//! AVX2 loops of the 8-bit blockwise state (numeric/blockwise8.hpp): the
//! encoder's table lookups and the decoder's value lookups as gathers, eight
//! values at a time. Each lane does exactly what dynamic_map::encode and the
//! scalar decoder do (the same float comparisons against the same thresholds,
//! the same single multiplication), so codes and decoded values are the scalar
//! ones bit for bit (tests/numeric/blockwise8.cpp compares them). Picked at run
//! time (exec/detail/cpu_features.hpp); without AVX2 the loops do nothing and
//! the caller's scalar loop does all the work.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

//! What the vector encoder reads of a dynamic map (dynamic_map::tables()).
struct dynamic_map_tables {
    //! Thresholds below each lookup bucket: positive magnitudes, then negative
    //! ones; one readable element past the last (a 32-bit gather of the last
    //! 16-bit entry reads two bytes more).
    const std::uint16_t* bucket_base;
    const float* thresholds; //!< 257: the midpoints rounded down, then two +inf
    std::uint32_t first_key; //!< upper 16 bits (sign cleared) of the first bucket's lower bound
    std::uint32_t buckets;   //!< buckets per sign
    bool is_signed;
};

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! Codes of ratio[0 .. n) for the largest multiple of 8 not above n; returns it.
__attribute__((target("avx2"))) inline std::size_t encode_ratios_avx2(const dynamic_map_tables& t, const float* ratio,
                                                                       std::size_t n, std::uint8_t* codes) {
    const __m256i low15 = _mm256_set1_epi32(0x7fff);
    const __m256i key_offset = _mm256_set1_epi32(static_cast<int>(t.first_key) - 1);
    const __m256i last_bucket = _mm256_set1_epi32(static_cast<int>(t.buckets) - 1);
    const __m256i negative_half = _mm256_set1_epi32(static_cast<int>(t.buckets));
    const __m256i low16 = _mm256_set1_epi32(0xffff);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i nan_code = _mm256_set1_epi32(255);
    const __m256 zero = _mm256_setzero_ps();
    const int* base_words = reinterpret_cast<const int*>(t.bucket_base);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(ratio + i);
        const __m256i u = _mm256_castps_si256(x);
        // bucket m = 0 below first_key, else min(key - first_key + 1, buckets - 1)
        const __m256i key = _mm256_and_si256(_mm256_srli_epi32(u, 16), low15);
        const __m256i m = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(key, key_offset), _mm256_setzero_si256()),
                                           last_bucket);
        const __m256i index = _mm256_add_epi32(m, _mm256_and_si256(_mm256_srai_epi32(u, 31), negative_half));
        const __m256i base = _mm256_and_si256(_mm256_i32gather_epi32(base_words, index, 2), low16);
        const __m256 below0 = _mm256_i32gather_ps(t.thresholds, base, 4);
        const __m256 below1 = _mm256_i32gather_ps(t.thresholds + 1, base, 4);
        // code = base + (t[base] < x) + (t[base + 1] < x): a true compare is -1
        __m256i code = _mm256_sub_epi32(base, _mm256_castps_si256(_mm256_cmp_ps(below0, x, _CMP_LT_OQ)));
        code = _mm256_sub_epi32(code, _mm256_castps_si256(_mm256_cmp_ps(below1, x, _CMP_LT_OQ)));
        if (!t.is_signed) { // a positive v never becomes 0
            const __m256i zero_code = _mm256_cmpeq_epi32(code, _mm256_setzero_si256());
            const __m256i positive = _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_GT_OQ));
            code = _mm256_add_epi32(code, _mm256_and_si256(_mm256_and_si256(zero_code, positive), one));
        }
        code = _mm256_blendv_epi8(code, nan_code, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
        const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(words, words));
    }
    return i;
}

//! x[j] = values[codes[j]] * absmax for the largest multiple of 8 not above n; returns it.
__attribute__((target("avx2"))) inline std::size_t decode_codes_avx2(const float* values, const std::uint8_t* codes,
                                                                      std::size_t n, float absmax, float* x) {
    const __m256 scale = _mm256_set1_ps(absmax);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i index = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_i32gather_ps(values, index, 4), scale));
    }
    return i;
}
#endif

//! The vector encoder where the CPU has one (values done, a multiple of 8), else 0.
inline std::size_t encode_ratios_vector(const dynamic_map_tables& t, const float* ratio, std::size_t n,
                                        std::uint8_t* codes) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if (best_cpu_isa() >= cpu_isa::avx2) return encode_ratios_avx2(t, ratio, n, codes);
#endif
    (void)t, (void)ratio, (void)n, (void)codes;
    return 0;
}
//! The vector decoder where the CPU has one (values done, a multiple of 8), else 0.
inline std::size_t decode_codes_vector(const float* values, const std::uint8_t* codes, std::size_t n, float absmax,
                                       float* x) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if (best_cpu_isa() >= cpu_isa::avx2) return decode_codes_avx2(values, codes, n, absmax, x);
#endif
    (void)values, (void)codes, (void)n, (void)absmax, (void)x;
    return 0;
}

} // namespace childtune::detail
