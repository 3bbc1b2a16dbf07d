#pragma once
//! \file
//! AVX2 keep-word generator (random/detail/philox_keep.hpp gives the definition):
//! the 16 Philox blocks of an element group as two vectors of eight lanes,
//! compiled with a per-function target attribute and picked at run time
//! (exec/detail/cpu_features.hpp), so users need no `-march`.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/random/detail/philox_keep.hpp>

#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

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

//! Eight Philox blocks, one per lane: the four counter/output words.
struct avx2_blocks8 {
    __m256i x0, x1, x2, x3;
};
//! One Philox round of eight blocks with round keys k0, k1.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void avx2_round(avx2_blocks8& b, __m256i k0, __m256i k1) {
    const avx2_mulhilo p0 = avx2_mul(b.x0, _mm256_set1_epi32(static_cast<int>(philox_m0)));
    const avx2_mulhilo p1 = avx2_mul(b.x2, _mm256_set1_epi32(static_cast<int>(philox_m1)));
    b = {_mm256_xor_si256(_mm256_xor_si256(p1.hi, b.x1), k0), p1.lo, _mm256_xor_si256(_mm256_xor_si256(p0.hi, b.x3), k1),
         p0.lo};
}
//! Blocks first + lane .. (eight lanes) before the rounds.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_blocks8 avx2_counters(const philox_keep_params& p,
                                                                                   std::uint64_t first) {
    return {_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))),
                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32))),
            _mm256_set1_epi32(static_cast<int>(p.tensor_key)), _mm256_set1_epi32(static_cast<int>(p.step))};
}

//! The 16 blocks 16g .. 16g + 15 after ten rounds: h[half] holds blocks 16g +
//! 8·half .. + 7. Both halves' rounds run interleaved (two dependency chains in
//! flight) on named variables, as sse2_lanes.
struct avx2_lanes {
    avx2_blocks8 h[2];
};
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_lanes philox_lanes_avx2(const philox_keep_params& p,
                                                                                    std::uint64_t group) {
    const std::uint64_t first = 16 * group;
    avx2_blocks8 a = avx2_counters(p, first), b = avx2_counters(p, first + 8);
    // The round keys advance in vector registers (one addition each, not a broadcast).
    const __m256i w0 = _mm256_set1_epi32(static_cast<int>(philox_w0)), w1 = _mm256_set1_epi32(static_cast<int>(philox_w1));
    __m256i k0 = _mm256_set1_epi32(static_cast<int>(p.k0)), k1 = _mm256_set1_epi32(static_cast<int>(p.k1));
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 = _mm256_add_epi32(k0, w0);
            k1 = _mm256_add_epi32(k1, w1);
        }
        avx2_round(a, k0, k1);
        avx2_round(b, k0, k1);
    }
    return {{a, b}};
}

//! Bits of `keep` (8 lanes) at 16·j + 8·half.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE std::uint64_t avx2_bits(__m256i keep, int j, int half) {
    return std::uint64_t(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(keep)))) << (16 * j + 8 * half);
}

//! Bits of x < limit (signed 32-bit lanes) at 16·j + 8·half.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE std::uint64_t avx2_below(__m256i x, __m256i limit, int j, int half) {
    return avx2_bits(_mm256_cmpgt_epi32(limit, x), j, half);
}

__attribute__((target("avx2"))) inline std::uint64_t philox_keep_word_avx2(const philox_keep_params& p,
                                                                            std::uint64_t group) {
    const avx2_lanes l = philox_lanes_avx2(p, group);
    const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < 2; ++g) { // unsigned x < threshold as a signed compare of both biased by 2^31
        const avx2_blocks8& h = l.h[g];
        word |= avx2_below(_mm256_xor_si256(h.x0, bias), limit, 0, g) | avx2_below(_mm256_xor_si256(h.x1, bias), limit, 1, g) |
                avx2_below(_mm256_xor_si256(h.x2, bias), limit, 2, g) | avx2_below(_mm256_xor_si256(h.x3, bias), limit, 3, g);
    }
    return word;
}

//! Version 2: keep words 2G (low halves) and 2G + 1 (high halves) of group G.
__attribute__((target("avx2"))) inline void philox_keep_pair_avx2(const philox_keep_params& p, std::uint64_t group,
                                                                   std::uint64_t* two) {
    const avx2_lanes l = philox_lanes_avx2(p, group);
    const __m256i low = _mm256_set1_epi32(0xFFFF);
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(p.threshold)); // < 2^16: signed compares suffice
    std::uint64_t lo = 0, hi = 0;
    for (int g = 0; g < 2; ++g) {
        const avx2_blocks8& h = l.h[g];
        lo |= avx2_below(_mm256_and_si256(h.x0, low), limit, 0, g) | avx2_below(_mm256_and_si256(h.x1, low), limit, 1, g) |
              avx2_below(_mm256_and_si256(h.x2, low), limit, 2, g) | avx2_below(_mm256_and_si256(h.x3, low), limit, 3, g);
        hi |= avx2_below(_mm256_srli_epi32(h.x0, 16), limit, 0, g) | avx2_below(_mm256_srli_epi32(h.x1, 16), limit, 1, g) |
              avx2_below(_mm256_srli_epi32(h.x2, 16), limit, 2, g) | avx2_below(_mm256_srli_epi32(h.x3, 16), limit, 3, g);
    }
    two[0] = lo;
    two[1] = hi;
}
#endif

} // namespace childtune::detail
