#pragma once
//! \file
//! Vectorised Philox4x32-10 keep-bit generation for the CPU step (x86-64).
//!
//! A Child-Tuning_F step needs one Bernoulli decision per parameter; the scalar
//! generator costs about as much as the whole memory-bound update, so the CPU
//! path computes 16 Philox blocks (64 decisions) at once with SSE2 (part of every
//! x86-64 target) or AVX2 (picked at run time through a per-function target
//! attribute, so users need no `-march`). Every variant returns exactly the bits
//! of the scalar definition in mask/bernoulli.hpp; the tests compare them.

#include <childtune/config.hpp>
#include <childtune/random/philox.hpp>

#include <cstdint>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif
#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

//! Everything a keep-bit word depends on besides the block index.
struct philox_keep_params {
    std::uint32_t k0, k1;       //!< Philox key (the seed)
    std::uint32_t tensor_key;   //!< counter word 2
    std::uint32_t step;         //!< counter word 3
    std::uint32_t threshold;    //!< keep iff draw < threshold (threshold < 2^32)
};

//! Spreads bit i of a 4-bit value to bit 4i.
inline constexpr std::uint16_t spread4_table[16] = {
    0x0000, 0x0001, 0x0010, 0x0011, 0x0100, 0x0101, 0x0110, 0x0111,
    0x1000, 0x1001, 0x1010, 0x1011, 0x1100, 0x1101, 0x1110, 0x1111};

//! Keep bits of the 16 blocks `block .. block + 15` (element 4b + j is bit 4(b - block) + j).
inline std::uint64_t philox_keep_word_scalar(const philox_keep_params& p, std::uint64_t block) {
    std::uint64_t word = 0;
    for (unsigned i = 0; i < 16; ++i) {
        const std::uint64_t b = block + i;
        const auto out = philox4x32({{static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32), p.tensor_key, p.step}},
                                    {{p.k0, p.k1}});
        for (unsigned j = 0; j < 4; ++j) word |= std::uint64_t{out.w[j] < p.threshold} << (4 * i + j);
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

inline std::uint64_t philox_keep_word_sse2(const philox_keep_params& p, std::uint64_t block) {
    constexpr int groups = 4; // 4 groups of 4 lanes: 16 blocks in flight
    __m128i x0[groups], x1[groups], x2[groups], x3[groups];
    for (int g = 0; g < groups; ++g) {
        std::uint32_t lo[4], hi[4];
        for (int l = 0; l < 4; ++l) {
            const std::uint64_t b = block + static_cast<std::uint64_t>(4 * g + l);
            lo[l] = static_cast<std::uint32_t>(b);
            hi[l] = static_cast<std::uint32_t>(b >> 32);
        }
        x0[g] = _mm_setr_epi32(static_cast<int>(lo[0]), static_cast<int>(lo[1]), static_cast<int>(lo[2]), static_cast<int>(lo[3]));
        x1[g] = _mm_setr_epi32(static_cast<int>(hi[0]), static_cast<int>(hi[1]), static_cast<int>(hi[2]), static_cast<int>(hi[3]));
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
    // Unsigned x < threshold as a signed compare of both biased by 2^31.
    const __m128i bias = _mm_set1_epi32(static_cast<int>(0x80000000u));
    const __m128i limit = _mm_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < groups; ++g) {
        const __m128i* xs[4] = {&x0[g], &x1[g], &x2[g], &x3[g]};
        std::uint64_t bits = 0;
        for (int j = 0; j < 4; ++j) {
            const __m128i keep = _mm_cmplt_epi32(_mm_xor_si128(*xs[j], bias), limit);
            bits |= std::uint64_t{spread4_table[_mm_movemask_ps(_mm_castsi128_ps(keep))]} << j;
        }
        word |= bits << (16 * g);
    }
    return word;
}
#endif

#if CHILDTUNE_HAS_AVX2_DISPATCH
struct avx2_mulhilo {
    __m256i lo, hi;
};
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_mulhilo avx2_mul(__m256i a, __m256i m) {
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    // Interleave: low words of even/odd products, high words of even/odd products.
    return {_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA),
            _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA)};
}

__attribute__((target("avx2"))) inline std::uint64_t philox_keep_word_avx2(const philox_keep_params& p,
                                                                            std::uint64_t block) {
    constexpr int groups = 2; // 2 groups of 8 lanes: 16 blocks in flight
    __m256i x0[groups], x1[groups], x2[groups], x3[groups];
    for (int g = 0; g < groups; ++g) {
        alignas(32) std::uint32_t lo[8], hi[8];
        for (int l = 0; l < 8; ++l) {
            const std::uint64_t b = block + static_cast<std::uint64_t>(8 * g + l);
            lo[l] = static_cast<std::uint32_t>(b);
            hi[l] = static_cast<std::uint32_t>(b >> 32);
        }
        x0[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
        x1[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
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
    const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < groups; ++g) {
        const __m256i* xs[4] = {&x0[g], &x1[g], &x2[g], &x3[g]};
        std::uint64_t bits = 0;
        for (int j = 0; j < 4; ++j) {
            // limit > x  <=>  x < limit (signed, after the bias)
            const __m256i keep = _mm256_cmpgt_epi32(limit, _mm256_xor_si256(*xs[j], bias));
            const unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep)));
            const std::uint64_t spread = std::uint64_t{spread4_table[m & 15u]} | (std::uint64_t{spread4_table[m >> 4]} << 16);
            bits |= spread << j;
        }
        word |= bits << (32 * g);
    }
    return word;
}

inline bool cpu_has_avx2() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return has;
}
#endif

//! Which implementation of the keep-word generator the CPU step uses.
enum class philox_isa { scalar, sse2, avx2 };

inline philox_isa best_philox_isa() {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if (cpu_has_avx2()) return philox_isa::avx2;
#endif
#if CHILDTUNE_HAS_SSE2
    return philox_isa::sse2;
#else
    return philox_isa::scalar;
#endif
}

inline std::uint64_t philox_keep_word(philox_isa isa, const philox_keep_params& p, std::uint64_t block) {
    switch (isa) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    case philox_isa::avx2: return philox_keep_word_avx2(p, block);
#endif
#if CHILDTUNE_HAS_SSE2
    case philox_isa::sse2: return philox_keep_word_sse2(p, block);
#endif
    default: return philox_keep_word_scalar(p, block);
    }
}

} // namespace childtune::detail
