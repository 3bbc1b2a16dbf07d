#pragma once
//! \file
//! The compact Child-Tuning_D layout's data movement (exec/kernel.hpp) in vector
//! lanes: expanding a 64-element word's kept state (stored contiguously, in
//! element order) into a 64-element block with zeros at the masked positions,
//! and compressing the block's kept lanes back. The scalar loops visit the
//! word's set bits one by one, a loop whose trip count is the popcount and
//! mispredicts.
//! - AVX-512: vexpandps / vcompressps per 16 lanes, the mask straight from the
//!   word; the compressed lanes are stored with a masked store of the first
//!   popcount lanes (the memory form of vcompressps is microcoded on AMD Zen 4).
//!   Out of line (the element pass is compiled for AVX2 at most), one call per
//!   word for all of its state buffers.
//! - AVX2 (no expand or compress instruction): each byte of the word picks a
//!   lane permutation from a 256-entry table, and the loads and stores of the
//!   contiguous side are masked to the byte's popcount.
//! Nothing is read or written past the kept elements. Pure data movement: the
//! values are the scalar loops' bit for bit (tests/exec/compact_moves.cpp).

#include <childtune/config.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

namespace childtune::detail {

//! For each byte m: eight 4-bit lane indices packed into 32 bits (lane i in
//! bits 4i..4i+3). Expand: lane i of the block takes source lane (number of set
//! bits of m below i). Compress: lane j of the output takes the block's lane
//! holding the j-th set bit of m (lanes past popcount(m) repeat lane 0; they are
//! not stored).
struct compact_lane_tables {
    std::array<std::uint32_t, 256> expand{};
    std::array<std::uint32_t, 256> compress{};
};

inline constexpr compact_lane_tables make_compact_lane_tables() {
    compact_lane_tables t;
    for (unsigned m = 0; m < 256; ++m) {
        std::uint32_t expand = 0, compress = 0;
        unsigned below = 0;
        for (unsigned i = 0; i < 8; ++i) {
            if ((m >> i) & 1u) {
                compress |= i << (4 * below);
                expand |= below << (4 * i);
                ++below;
            }
        }
        t.expand[m] = expand;
        t.compress[m] = compress;
    }
    return t;
}

inline constexpr compact_lane_tables compact_lanes = make_compact_lane_tables();

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! The lane indices packed in `packed` as a vector; the first `count` lanes' mask.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE __m256i unpack_lane_indices(std::uint32_t packed) {
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                              _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                            _mm256_set1_epi32(7));
}
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE __m256i first_lanes(unsigned count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

//! block[0 .. 64) = the kept state of `bits` (lane i takes the next of `kept`
//! where bit i is set, 0 elsewhere); returns the number of kept elements read.
__attribute__((target("avx2"))) inline std::size_t expand_word_avx2(const float* kept, std::uint64_t bits,
                                                                                     float* block) {
    std::size_t k = 0;
    for (unsigned c = 0; c < 8; ++c) {
        const unsigned m = static_cast<unsigned>(bits >> (8 * c)) & 0xffu;
        const unsigned count = static_cast<unsigned>(std::popcount(m));
        const __m256 source = _mm256_maskload_ps(kept + k, first_lanes(count));
        const __m256i set = _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(m)), _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)),
            _mm256_setzero_si256());
        const __m256 spread = _mm256_permutevar8x32_ps(source, unpack_lane_indices(compact_lanes.expand[m]));
        _mm256_storeu_ps(block + 8 * c, _mm256_andnot_ps(_mm256_castsi256_ps(set), spread));
        k += count;
    }
    return k;
}

//! kept[0 ..) = the lanes of block[0 .. 64) whose bit is set in `bits`, in
//! order; returns how many were written.
__attribute__((target("avx2"))) inline std::size_t compress_word_avx2(const float* block, std::uint64_t bits,
                                                                                       float* kept) {
    std::size_t k = 0;
    for (unsigned c = 0; c < 8; ++c) {
        const unsigned m = static_cast<unsigned>(bits >> (8 * c)) & 0xffu;
        const unsigned count = static_cast<unsigned>(std::popcount(m));
        const __m256 packed =
            _mm256_permutevar8x32_ps(_mm256_loadu_ps(block + 8 * c), unpack_lane_indices(compact_lanes.compress[m]));
        _mm256_maskstore_ps(kept + k, first_lanes(count), packed);
        k += count;
    }
    return k;
}

//! expand_word_avx2 for `buffers` state buffers with AVX-512: blocks[64 b ..
//! 64 b + 64) from kept[b], b < buffers.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline void
expand_words_avx512(const float* const* kept, std::size_t buffers, std::uint64_t bits, float* blocks) {
    for (std::size_t b = 0; b < buffers; ++b) {
        const float* source = kept[b];
        for (unsigned c = 0; c < 4; ++c) {
            const auto m = static_cast<__mmask16>(bits >> (16 * c));
            _mm512_storeu_ps(blocks + 64 * b + 16 * c, _mm512_maskz_expandloadu_ps(m, source));
            source += std::popcount(static_cast<unsigned>(m));
        }
    }
}

//! compress_word_avx2 for `buffers` state buffers with AVX-512: kept[b] from
//! blocks[64 b .. 64 b + 64), b < buffers.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline void
compress_words_avx512(const float* blocks, std::size_t buffers, std::uint64_t bits, float* const* kept) {
    for (std::size_t b = 0; b < buffers; ++b) {
        float* target = kept[b];
        for (unsigned c = 0; c < 4; ++c) {
            const auto m = static_cast<__mmask16>(bits >> (16 * c));
            const unsigned count = static_cast<unsigned>(std::popcount(static_cast<unsigned>(m)));
            const __m512 packed = _mm512_maskz_compress_ps(m, _mm512_loadu_ps(blocks + 64 * b + 16 * c));
            _mm512_mask_storeu_ps(target, static_cast<__mmask16>((1u << count) - 1u), packed);
            target += count;
        }
    }
}
#endif

} // namespace childtune::detail
