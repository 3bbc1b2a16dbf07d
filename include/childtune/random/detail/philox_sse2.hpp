#pragma once
//! \file
//! SSE2 keep-word generator (random/detail/philox_keep.hpp gives the definition):
//! the 16 Philox blocks of an element group as four vectors of four lanes. SSE2
//! is part of every x86-64 target; CPUs without AVX2 use it.

#include <childtune/config.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune::detail {

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

//! Four Philox blocks, one per lane: the four counter/output words.
struct sse2_blocks4 {
    __m128i x0, x1, x2, x3;
};
//! One Philox round of four blocks with round keys k0, k1.
CHILDTUNE_ALWAYS_INLINE void sse2_round(sse2_blocks4& b, __m128i k0, __m128i k1) {
    const sse2_mulhilo p0 = sse2_mul(b.x0, _mm_set1_epi32(static_cast<int>(philox_m0)));
    const sse2_mulhilo p1 = sse2_mul(b.x2, _mm_set1_epi32(static_cast<int>(philox_m1)));
    b = {_mm_xor_si128(_mm_xor_si128(p1.hi, b.x1), k0), p1.lo, _mm_xor_si128(_mm_xor_si128(p0.hi, b.x3), k1), p0.lo};
}
//! Blocks first + lane .. (four lanes) before the rounds.
CHILDTUNE_ALWAYS_INLINE sse2_blocks4 sse2_counters(const philox_keep_params& p, std::uint64_t first) {
    return {_mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first))), _mm_setr_epi32(0, 1, 2, 3)),
            _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first >> 32))),
            _mm_set1_epi32(static_cast<int>(p.tensor_key)), _mm_set1_epi32(static_cast<int>(p.step))};
}

//! The 16 blocks 16g .. 16g + 15 after ten rounds, four lanes each: q[quarter]
//! holds blocks 16g + 4·quarter .. + 3. The quarters' rounds run interleaved
//! (four dependency chains in flight) on named variables: written as arrays
//! indexed in loops, GCC 12 kept the state in memory, a store and a reload
//! every round (docs/benchmarks.md, "Philox state in registers").
struct sse2_lanes {
    sse2_blocks4 q[4];
};
CHILDTUNE_ALWAYS_INLINE sse2_lanes sse2_rounds(const philox_keep_params& p, sse2_blocks4 a, sse2_blocks4 b, sse2_blocks4 c,
                                               sse2_blocks4 d) {
    std::uint32_t k0 = p.k0, k1 = p.k1;
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += philox_w0;
            k1 += philox_w1;
        }
        const __m128i vk0 = _mm_set1_epi32(static_cast<int>(k0)), vk1 = _mm_set1_epi32(static_cast<int>(k1));
        sse2_round(a, vk0, vk1);
        sse2_round(b, vk0, vk1);
        sse2_round(c, vk0, vk1);
        sse2_round(d, vk0, vk1);
    }
    return {{a, b, c, d}};
}
CHILDTUNE_ALWAYS_INLINE sse2_lanes philox_lanes_sse2(const philox_keep_params& p, std::uint64_t group) {
    const std::uint64_t first = 16 * group; // a multiple of 16: lo32 + 15 never wraps
    return sse2_rounds(p, sse2_counters(p, first), sse2_counters(p, first + 4), sse2_counters(p, first + 8),
                       sse2_counters(p, first + 12));
}

//! Bits of `keep` (4 lanes) at 16·j + 4·quarter.
CHILDTUNE_ALWAYS_INLINE std::uint64_t sse2_bits(__m128i keep, int j, int quarter) {
    return std::uint64_t(static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(keep)))) << (16 * j + 4 * quarter);
}

//! Bits of x < limit (signed 32-bit lanes) at 16·j + 4·quarter.
CHILDTUNE_ALWAYS_INLINE std::uint64_t sse2_below(__m128i x, __m128i limit, int j, int quarter) {
    return sse2_bits(_mm_cmplt_epi32(x, limit), j, quarter);
}

inline std::uint64_t philox_keep_word_sse2(const philox_keep_params& p, std::uint64_t group) {
    const sse2_lanes l = philox_lanes_sse2(p, group);
    // Unsigned x < threshold as a signed compare of both biased by 2^31.
    const __m128i bias = _mm_set1_epi32(static_cast<int>(0x80000000u));
    const __m128i limit = _mm_set1_epi32(static_cast<int>(p.threshold ^ 0x80000000u));
    std::uint64_t word = 0;
    for (int g = 0; g < 4; ++g) {
        const sse2_blocks4& q = l.q[g];
        word |= sse2_below(_mm_xor_si128(q.x0, bias), limit, 0, g) | sse2_below(_mm_xor_si128(q.x1, bias), limit, 1, g) |
                sse2_below(_mm_xor_si128(q.x2, bias), limit, 2, g) | sse2_below(_mm_xor_si128(q.x3, bias), limit, 3, g);
    }
    return word;
}

//! Version 2: keep words 2G (low halves) and 2G + 1 (high halves) of group G.
inline void philox_keep_pair_sse2(const philox_keep_params& p, std::uint64_t group, std::uint64_t* two) {
    const sse2_lanes l = philox_lanes_sse2(p, group);
    const __m128i low = _mm_set1_epi32(0xFFFF);
    const __m128i limit = _mm_set1_epi32(static_cast<int>(p.threshold)); // < 2^16: signed compares suffice
    std::uint64_t lo = 0, hi = 0;
    for (int g = 0; g < 4; ++g) {
        const sse2_blocks4& q = l.q[g];
        lo |= sse2_below(_mm_and_si128(q.x0, low), limit, 0, g) | sse2_below(_mm_and_si128(q.x1, low), limit, 1, g) |
              sse2_below(_mm_and_si128(q.x2, low), limit, 2, g) | sse2_below(_mm_and_si128(q.x3, low), limit, 3, g);
        hi |= sse2_below(_mm_srli_epi32(q.x0, 16), limit, 0, g) | sse2_below(_mm_srli_epi32(q.x1, 16), limit, 1, g) |
              sse2_below(_mm_srli_epi32(q.x2, 16), limit, 2, g) | sse2_below(_mm_srli_epi32(q.x3, 16), limit, 3, g);
    }
    two[0] = lo;
    two[1] = hi;
}

//! Version 3: folds the eight planes of the blocks b into below, tied (four
//! lanes), as compare_planes_avx2.
CHILDTUNE_ALWAYS_INLINE void compare_planes_sse2(const sse2_blocks4& b, std::uint32_t threshold, unsigned level, __m128i& below,
                                                 __m128i& tied) {
    const __m128i words[4] = {b.x0, b.x1, b.x2, b.x3};
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(below, tied, j % 2 ? _mm_srli_epi32(words[j / 2], 16) : words[j / 2],
                   ((threshold >> (31 - 8 * level - j)) & 1u) != 0);
}

//! Version 3, level 0 of super-group s (plane_first_scalar's result): the 16
//! lanes' first blocks as four interleaved batches of four, the bits placed
//! and the tied lanes queued in scalar code.
inline void plane_first_sse2(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four, plane_queue& q,
                             std::uint32_t first_word) {
    const std::uint64_t block0 = plane_block(s, 0, 0);
    const auto counters = [&](int quarter) { // lanes 4·quarter .. + 3: blocks block0 + 4m
        return sse2_blocks4{_mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0) + 16u * quarter)),
                                          _mm_setr_epi32(0, 4, 8, 12)),
                            _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0 >> 32))),
                            _mm_set1_epi32(static_cast<int>(p.tensor_key)), _mm_set1_epi32(static_cast<int>(p.step))};
    };
    const sse2_lanes l = sse2_rounds(p, counters(0), counters(1), counters(2), counters(3));
    const __m128i none = _mm_setzero_si128(), all = _mm_set1_epi32(-1), low16 = _mm_set1_epi32(0xFFFF);
    __m128i b0 = none, b1 = none, b2 = none, b3 = none, t0 = all, t1 = all, t2 = all, t3 = all;
    compare_planes_sse2(l.q[0], p.threshold, 0, b0, t0);
    compare_planes_sse2(l.q[1], p.threshold, 0, b1, t1);
    compare_planes_sse2(l.q[2], p.threshold, 0, b2, t2);
    compare_planes_sse2(l.q[3], p.threshold, 0, b3, t3);
    alignas(16) std::uint32_t below[16], tied[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(below), _mm_and_si128(b0, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(below + 4), _mm_and_si128(b1, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(below + 8), _mm_and_si128(b2, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(below + 12), _mm_and_si128(b3, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(tied), _mm_and_si128(t0, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(tied + 4), _mm_and_si128(t1, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(tied + 8), _mm_and_si128(t2, low16));
    _mm_store_si128(reinterpret_cast<__m128i*>(tied + 12), _mm_and_si128(t3, low16));
    four[0] = four[1] = four[2] = four[3] = 0;
    for (unsigned m = 0; m < 16; ++m) {
        scatter_lane_bits(below[m], m, four);
        if (tied[m] != 0) q.push(block0 + 4 * m, m, tied[m], first_word);
    }
}

//! Version 3, level 1 of queue entries e .. e + 15, as four interleaved batches.
inline void plane_level_sse2(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    const auto counters = [&](std::size_t at) {
        return sse2_blocks4{_mm_add_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q.block_lo + at)), _mm_set1_epi32(1)),
                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.block_hi + at)),
                            _mm_set1_epi32(static_cast<int>(p.tensor_key)), _mm_set1_epi32(static_cast<int>(p.step))};
    };
    const sse2_lanes l = sse2_rounds(p, counters(e), counters(e + 4), counters(e + 8), counters(e + 12));
    const __m128i low16 = _mm_set1_epi32(0xFFFF);
    for (unsigned g = 0; g < 4; ++g) { // stores in between: no state kept across iterations
        __m128i below = _mm_setzero_si128(), tied = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.tied + e + 4 * g));
        compare_planes_sse2(l.q[g], p.threshold, 1, below, tied);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.below + e + 4 * g), _mm_and_si128(below, low16));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.tied + e + 4 * g), _mm_and_si128(tied, low16));
    }
}
#endif

} // namespace childtune::detail
