#pragma once
//! \file
//! AVX2 loops of the 8-bit blockwise state (numeric/blockwise8.hpp), eight
//! values at a time: the encoder divides by the block's scale and finds the
//! code with one gather of the value's bucket word; the decoder loads the
//! value of each code and multiplies by the scale. Each lane does exactly what
//! the scalar definition does (the same IEEE division, the same float
//! comparisons, the same single multiplication), so codes and decoded values
//! are the scalar ones bit for bit (tests/numeric/blockwise8.cpp compares them).
//! Picked at run time (exec/detail/cpu_features.hpp, numeric/blockwise8.hpp).

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

struct dynamic_map_cells;

//! What the vector encoders and decoders read of a dynamic map (dynamic_map::tables()).
struct dynamic_map_tables {
    //! One word per lookup bucket, positive magnitudes then negative ones: the
    //! thresholds below the bucket << 16 | the lower half of the one threshold
    //! inside it (complemented for the negative side), 0xffff for none.
    const std::uint32_t* bucket_words;
    const float* values;     //!< the 256 map values, ascending
    std::uint32_t first_key; //!< upper 16 bits (sign cleared) of the first bucket's lower bound
    std::uint32_t buckets;   //!< buckets per sign
    bool is_signed;          //!< both signs, or non-negative values only
    //! The gather-free encoder's cell tables (numeric/detail/blockwise8_vbmi.hpp).
    const dynamic_map_cells* cells = nullptr;
};

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! The largest |x[j]|, NaNs not counted, over the largest multiple k of 32 not
//! above n, folded into `absmax`; returns k. Four running maxima of eight lanes,
//! each max(|x|, m), which keeps m for a NaN x (numeric/blockwise8.hpp's
//! block_absmax gives the reasoning; the order of a maximum does not matter).
__attribute__((target("avx2"))) inline std::size_t absmax_avx2(const float* x, std::size_t n, float& absmax) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_set1_ps(absmax), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), magnitude), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 8), magnitude), m1);
        m2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 16), magnitude), m2);
        m3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 24), magnitude), m3);
    }
    const __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    const __m128 half = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    const __m128 quarter = _mm_max_ps(half, _mm_movehl_ps(half, half));
    absmax = _mm_cvtss_f32(_mm_max_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
    return i;
}

//! Codes of x[0 .. k) / absmax for the largest multiple k of 8 not above n; returns k.
__attribute__((target("avx2"))) inline std::size_t encode_block_avx2(const dynamic_map_tables& t, const float* x,
                                                                      std::size_t n, float absmax, std::uint8_t* codes) {
    const __m256 scale = _mm256_set1_ps(absmax);
    const __m256i low15 = _mm256_set1_epi32(0x7fff);
    const __m256i low16 = _mm256_set1_epi32(0xffff);
    const __m256i key_offset = _mm256_set1_epi32(static_cast<int>(t.first_key) - 1);
    const __m256i last_bucket = _mm256_set1_epi32(static_cast<int>(t.buckets) - 1);
    const __m256i negative_half = _mm256_set1_epi32(static_cast<int>(t.buckets));
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i nan_code = _mm256_set1_epi32(255);
    const __m256 zero = _mm256_setzero_ps();
    const int* words = reinterpret_cast<const int*>(t.bucket_words);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 ratio = _mm256_div_ps(_mm256_loadu_ps(x + i), scale);
        const __m256i u = _mm256_castps_si256(ratio);
        const __m256i sign = _mm256_srai_epi32(u, 31); // all ones for a negative ratio
        // bucket m = 0 below first_key, else min(key - first_key + 1, buckets - 1)
        const __m256i key = _mm256_and_si256(_mm256_srli_epi32(u, 16), low15);
        const __m256i m = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(key, key_offset), _mm256_setzero_si256()),
                                           last_bucket);
        const __m256i word = _mm256_i32gather_epi32(words, _mm256_add_epi32(m, _mm256_and_si256(sign, negative_half)), 4);
        // code = thresholds below the bucket + (the bucket's threshold < ratio)
        const __m256i low = _mm256_and_si256(_mm256_xor_si256(u, sign), low16);
        __m256i code = _mm256_sub_epi32(_mm256_srli_epi32(word, 16), _mm256_cmpgt_epi32(low, _mm256_and_si256(word, low16)));
        if (!t.is_signed) { // a positive v never becomes 0
            const __m256i zero_code = _mm256_cmpeq_epi32(code, _mm256_setzero_si256());
            const __m256i positive = _mm256_castps_si256(_mm256_cmp_ps(ratio, zero, _CMP_GT_OQ));
            code = _mm256_add_epi32(code, _mm256_and_si256(_mm256_and_si256(zero_code, positive), one));
        }
        code = _mm256_blendv_epi8(code, nan_code, _mm256_castps_si256(_mm256_cmp_ps(ratio, ratio, _CMP_UNORD_Q)));
        const __m128i halves = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(halves, halves));
    }
    return i;
}

//! x[j] = values[codes[j]] * absmax for the largest multiple k of 8 not above n; returns k.
//! Eight scalar loads (each code read as a byte, its value loaded and inserted)
//! instead of `vgatherdps`: on Zen 5 this loop runs 2.5x faster than the gather
//! (docs/benchmarks.md, "The AVX2 decoder without gathers"). Gathers are slow
//! on AMD cores and, since the Gather Data Sampling microcode mitigation, on
//! most Intel cores too. The codes are bytes in memory, so each index goes
//! straight into an integer register, never through a vector one.
__attribute__((target("avx2"))) inline std::size_t decode_block_avx2(const dynamic_map_tables& t, const std::uint8_t* codes,
                                                                      std::size_t n, float absmax, float* x) {
    const __m256 scale = _mm256_set1_ps(absmax);
    const float* v = t.values;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint8_t* c = codes + i;
        const __m128 low = _mm_setr_ps(v[c[0]], v[c[1]], v[c[2]], v[c[3]]);
        const __m128 high = _mm_setr_ps(v[c[4]], v[c[5]], v[c[6]], v[c[7]]);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_set_m128(high, low), scale));
    }
    return i;
}
#endif

} // namespace childtune::detail
