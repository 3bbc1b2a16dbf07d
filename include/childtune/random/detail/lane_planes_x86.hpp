#pragma once
//! \file
//! Mask definition 4's passes (random/detail/lane_planes.hpp) on SSE2 and AVX2
//! registers; the AVX-512 kernels use the AVX2 ones (their ARS rounds run on
//! ymm registers either way: random/detail/ars_x86.hpp).
//!
//! A super-group's 16 level-0 blocks come out of ars_x86.hpp as four registers
//! of words per eight lanes: the first eight blocks (half 0) hold planes 0-3 of
//! lanes 0-7, the next eight planes 4-7. Compared plane by plane with the
//! threshold's bits they leave the lanes' keep bits in one 256-bit register,
//! which is the super-group's four keep words as they lie in memory.

#include <childtune/config.hpp>
#include <childtune/random/detail/ars_x86.hpp>
#include <childtune/random/detail/lane_planes.hpp>
#include <childtune/random/detail/philox_avx2.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_SSE2
#include <immintrin.h>
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_SSE2
//! Level `level` of four lanes whose half-0 blocks have counter words lo, hi:
//! the eight planes of their two blocks each (half 1 is 32 blocks on) folded
//! into below, tied.
CHILDTUNE_ALWAYS_INLINE void fold_lanes_sse2(const philox_keep_params& p, aes_path path, __m128i lo, __m128i hi, unsigned level,
                                             __m128i& below, __m128i& tied) {
    __m128i first[4], second[4];
    ars_words_sse2(p, path, lo, hi, first);
    ars_words_sse2(p, path, _mm_add_epi32(lo, _mm_set1_epi32(32)), hi, second);
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(below, tied, j < 4 ? first[j] : second[j - 4], ((p.threshold >> (31 - 8 * level - j)) & 1u) != 0);
}
//! Version 4, level 0 of super-group s (lane_first_scalar's result).
inline void lane_first_sse2(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four, plane_queue& q,
                            std::uint32_t first_word) {
    const aes_path path = resolve_aes_path(p.aes, false);
    const std::uint64_t block0 = lane_block(s, 0, 0, 0);
    const __m128i hi = _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0 >> 32)));
    alignas(16) std::uint32_t below[8], tied[8];
    for (unsigned quarter = 0; quarter < 2; ++quarter) { // lanes 4·quarter .. + 3
        const __m128i lo = _mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0) + 16u * quarter)),
                                         _mm_setr_epi32(0, 4, 8, 12));
        __m128i b = _mm_setzero_si128(), t = _mm_set1_epi32(-1);
        fold_lanes_sse2(p, path, lo, hi, 0, b, t);
        _mm_store_si128(reinterpret_cast<__m128i*>(below + 4 * quarter), b);
        _mm_store_si128(reinterpret_cast<__m128i*>(tied + 4 * quarter), t);
    }
    for (unsigned w = 0; w < 4; ++w) four[w] = std::uint64_t{below[2 * w]} | std::uint64_t{below[2 * w + 1]} << 32;
    for (unsigned lane = 0; lane < 8; ++lane)
        if (tied[lane] != 0) q.push(lane_block(s, lane, 0, 0), lane, tied[lane], first_word);
}
//! Version 4, level 1 of queue entries e .. e + 15, four at a time.
inline void lane_level_sse2(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    const aes_path path = resolve_aes_path(p.aes, false);
    for (std::size_t g = e; g < e + 16; g += 4) {
        __m128i below = _mm_setzero_si128(), tied = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.tied + g));
        fold_lanes_sse2(p, path, _mm_add_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q.block_lo + g)), _mm_set1_epi32(1)),
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.block_hi + g)), 1, below, tied);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.below + g), below);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.tied + g), tied);
    }
}
#endif

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! fold_lanes_sse2 on eight lanes.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void fold_lanes_avx2(const philox_keep_params& p, aes_path path, __m256i lo,
                                                                             __m256i hi, unsigned level, __m256i& below,
                                                                             __m256i& tied) {
    __m256i first[4], second[4];
    ars_words_avx2(p, path, lo, hi, _mm256_add_epi32(lo, _mm256_set1_epi32(32)), hi, first, second);
#pragma GCC unroll 8
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(below, tied, j < 4 ? first[j] : second[j - 4], ((p.threshold >> (31 - 8 * level - j)) & 1u) != 0);
}
//! Version 4, level 0 of super-group s: the lanes' bits stored as they come,
//! and the tied lanes queued without a branch (queue_lanes_avx2).
__attribute__((target("avx2"))) inline void lane_first_avx2(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four,
                                                            plane_queue& q, std::uint32_t first_word) {
    const std::uint64_t block0 = lane_block(s, 0, 0, 0);
    const __m256i hi = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0 >> 32)));
    const __m256i lo = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0))),
                                        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256i below = _mm256_setzero_si256(), tied = _mm256_set1_epi32(-1);
    fold_lanes_avx2(p, resolve_aes_path(p.aes, true), lo, hi, 0, below, tied);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(four), below);
    queue_lanes_avx2(q, avx2_nonzero_lanes(tied), lo, hi, tied,
                     _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(16 * first_word)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}
//! Version 4, level 1 of queue entries e .. e + 15, eight at a time.
__attribute__((target("avx2"))) inline void lane_level_avx2(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    const aes_path path = resolve_aes_path(p.aes, true);
    for (std::size_t g = e; g < e + 16; g += 8) {
        __m256i below = _mm256_setzero_si256(), tied = avx2_load(q.tied + g);
        fold_lanes_avx2(p, path, _mm256_add_epi32(avx2_load(q.block_lo + g), _mm256_set1_epi32(1)), avx2_load(q.block_hi + g), 1, below,
                        tied);
        avx2_store(q.below + g, below);
        avx2_store(q.tied + g, tied);
    }
}
#endif

} // namespace childtune::detail
