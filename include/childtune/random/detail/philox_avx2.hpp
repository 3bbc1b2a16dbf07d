#pragma once
//! \file
//! AVX2 keep-word generator (random/detail/philox_keep.hpp gives the definition):
//! the 16 Philox blocks of an element group as two vectors of eight lanes,
//! compiled with a per-function target attribute and picked at run time
//! (exec/detail/cpu_features.hpp), so users need no `-march`.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>

#include <bit>
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
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_lanes avx2_rounds(const philox_keep_params& p, avx2_blocks8 a,
                                                                              avx2_blocks8 b) {
    // The round keys advance in vector registers (one addition each, not a broadcast).
    const __m256i w0 = _mm256_set1_epi32(static_cast<int>(philox_w0)), w1 = _mm256_set1_epi32(static_cast<int>(philox_w1));
    __m256i k0 = _mm256_set1_epi32(static_cast<int>(p.k0)), k1 = _mm256_set1_epi32(static_cast<int>(p.k1));
#pragma GCC unroll 10
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
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE avx2_lanes philox_lanes_avx2(const philox_keep_params& p,
                                                                                    std::uint64_t group) {
    const std::uint64_t first = 16 * group;
    return avx2_rounds(p, avx2_counters(p, first), avx2_counters(p, first + 8));
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

//! Version 3: folds the eight planes of the blocks b into below, tied (eight
//! lanes), against threshold bits 31 - 8·level .. 24 - 8·level. Bits above 15
//! of the lanes are left undefined; callers mask them.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void compare_planes_avx2(const avx2_blocks8& b, std::uint32_t threshold,
                                                                                 unsigned level, __m256i& below, __m256i& tied) {
    const __m256i words[4] = {b.x0, b.x1, b.x2, b.x3};
#pragma GCC unroll 8
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(below, tied, j % 2 ? _mm256_srli_epi32(words[j / 2], 16) : words[j / 2],
                   ((threshold >> (31 - 8 * level - j)) & 1u) != 0);
}

//! One stage of a 16x16 bit transpose: rows r and r + b (lanes of 16 bits,
//! `partner` holds each lane's row r ^ b, `upper` selects the lanes with r & b)
//! swap the columns k & b of row r with the columns !(k & b) of row r + b.
template <int B>
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE __m256i transpose_stage_avx2(__m256i v, __m256i partner, __m256i upper,
                                                                                   __m256i columns) {
    const __m256i low_row = _mm256_blendv_epi8(v, partner, upper), high_row = _mm256_blendv_epi8(partner, v, upper);
    const __m256i t = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(low_row, B), high_row), columns);
    return _mm256_xor_si256(v, _mm256_blendv_epi8(_mm256_slli_epi16(t, B), t, upper));
}
//! The 16x16 bit matrix whose row m is lane m (16-bit lanes, bit k = column k),
//! transposed: lane k bit m. For definition 3 that turns the lanes' keep bits
//! into the super-group's four keep words, in place.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE __m256i transpose_bits16_avx2(__m256i v) {
    const __m256i upper8 = _mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1), upper4 = _mm256_setr_epi32(0, 0, -1, -1, 0, 0, -1, -1);
    const __m256i upper2 = _mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1), upper1 = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    const __m256i swap_pairs = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10,
                                                11, 8, 9, 14, 15, 12, 13);
    v = transpose_stage_avx2<8>(v, _mm256_permute4x64_epi64(v, 0x4E), upper8, _mm256_set1_epi16(0x00FF));
    v = transpose_stage_avx2<4>(v, _mm256_shuffle_epi32(v, 0x4E), upper4, _mm256_set1_epi16(0x0F0F));
    v = transpose_stage_avx2<2>(v, _mm256_shuffle_epi32(v, 0xB1), upper2, _mm256_set1_epi16(0x3333));
    return transpose_stage_avx2<1>(v, _mm256_shuffle_epi8(v, swap_pairs), upper1, _mm256_set1_epi16(0x5555));
}

__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE __m256i avx2_load(const std::uint32_t* a) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
}
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void avx2_store(std::uint32_t* a, __m256i v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), v);
}
//! Bit m set for each 32-bit lane m of v that is not zero.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE unsigned avx2_nonzero_lanes(__m256i v) {
    const __m256i zero = _mm256_cmpeq_epi32(v, _mm256_setzero_si256());
    return ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(zero))) & 0xFFu;
}
//! Appends the lanes set in `mask` (eight lanes) to the queue without a
//! branch: packed to the front by the permutation plane_pack_indices looks up,
//! all eight slots stored, used or not (the queue has the room).
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void queue_lanes_avx2(plane_queue& q, unsigned mask, __m256i block_lo,
                                                                              __m256i block_hi, __m256i tied, __m256i place) {
    const __m256i order = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&plane_pack_indices[mask])));
    const std::size_t at = q.count;
    avx2_store(q.block_lo + at, _mm256_permutevar8x32_epi32(block_lo, order));
    avx2_store(q.block_hi + at, _mm256_permutevar8x32_epi32(block_hi, order));
    avx2_store(q.tied + at, _mm256_permutevar8x32_epi32(tied, order));
    avx2_store(q.place + at, _mm256_permutevar8x32_epi32(place, order));
    q.count = at + static_cast<std::size_t>(std::popcount(mask));
}
//! Version 3, level 0 of super-group s (plane_first_scalar's result): lanes m
//! = 0 .. 7 and 8 .. 15 as two batches in flight.
__attribute__((target("avx2"))) inline void plane_first_avx2(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four,
                                                             plane_queue& q, std::uint32_t first_word) {
    const std::uint64_t block0 = plane_block(s, 0, 0);
    const __m256i hi = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0 >> 32)));
    const __m256i key = _mm256_set1_epi32(static_cast<int>(p.tensor_key)), step = _mm256_set1_epi32(static_cast<int>(p.step));
    const __m256i lo0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0))),
                                         _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    const __m256i lo1 = _mm256_add_epi32(lo0, _mm256_set1_epi32(32));
    const avx2_lanes l = avx2_rounds(p, {lo0, hi, key, step}, {lo1, hi, key, step});
    const __m256i low16 = _mm256_set1_epi32(0xFFFF);
    // Named variables, not arrays indexed in a loop: GCC 12 kept such arrays in
    // memory, and every plane then waited for a store and a reload.
    __m256i below0 = _mm256_setzero_si256(), tied0 = _mm256_set1_epi32(-1);
    __m256i below1 = _mm256_setzero_si256(), tied1 = _mm256_set1_epi32(-1);
    compare_planes_avx2(l.h[0], p.threshold, 0, below0, tied0);
    compare_planes_avx2(l.h[1], p.threshold, 0, below1, tied1);
    below0 = _mm256_and_si256(below0, low16);
    below1 = _mm256_and_si256(below1, low16);
    // Lanes 0-3, 8-11 | 4-7, 12-15 after the pack; the permute puts them in order.
    const __m256i rows = _mm256_permute4x64_epi64(_mm256_packus_epi32(below0, below1), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(four), transpose_bits16_avx2(rows));
    // The tied lanes join the queue without a branch: each half of eight lanes
    // is packed by the permutation its mask looks up (plane_pack_indices), and
    // all eight slots are stored, used or not (the queue has the room). A
    // branch per tied lane mispredicted about once per super-group: how many
    // lanes tie is random (none in 37 % of super-groups, one in 38 %).
    const __m256i tied_lo = _mm256_and_si256(tied0, low16), tied_hi = _mm256_and_si256(tied1, low16);
    const __m256i place0 =
        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(16 * first_word)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    queue_lanes_avx2(q, avx2_nonzero_lanes(tied_lo), lo0, hi, tied_lo, place0);
    queue_lanes_avx2(q, avx2_nonzero_lanes(tied_hi), lo1, hi, tied_hi, _mm256_add_epi32(place0, _mm256_set1_epi32(8)));
}

//! Version 3, level 1 of queue entries e .. e + 15, as two batches in flight.
__attribute__((target("avx2"))) inline void plane_level_avx2(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    const __m256i key = _mm256_set1_epi32(static_cast<int>(p.tensor_key)), step = _mm256_set1_epi32(static_cast<int>(p.step));
    const __m256i one = _mm256_set1_epi32(1), low16 = _mm256_set1_epi32(0xFFFF);
    const avx2_lanes l = avx2_rounds(p, {_mm256_add_epi32(avx2_load(q.block_lo + e), one), avx2_load(q.block_hi + e), key, step},
                                     {_mm256_add_epi32(avx2_load(q.block_lo + e + 8), one), avx2_load(q.block_hi + e + 8), key, step});
    for (unsigned h = 0; h < 2; ++h) {
        __m256i below = _mm256_setzero_si256(), tied = avx2_load(q.tied + e + 8 * h);
        compare_planes_avx2(l.h[h], p.threshold, 1, below, tied);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.below + e + 8 * h), _mm256_and_si256(below, low16));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.tied + e + 8 * h), _mm256_and_si256(tied, low16));
    }
}
#endif

} // namespace childtune::detail
