#pragma once
//! \file
//! Keep words of mask definition 4 (mask/bernoulli.hpp): 32-bit draws as bit
//! planes whose bits are consecutive elements, drawn by ARS-7.
//!
//! A super-group is 256 elements, four keep words, eight lanes of 32
//! consecutive elements. Lane l's draws take their planes from 32-bit words:
//! plane j is bit i % 32 of word j % 4 of block lane_block(s, l, (j % 8) / 4,
//! j / 8). Eight vector lanes of such words compared plane by plane give the
//! super-group's four keep words as they lie in memory: no bit transpose, which
//! is what definition 3 spends most of its draw on once its blocks are cheap.
//! The level-0 blocks of a super-group are definition 3's 16 counters, so the
//! generators share the counter code; a lane still tied after its first byte
//! (probability about 32 · 2^-8) is queued, and its next two blocks drawn for
//! the queue at once (philox_planes.hpp's queue and chunk driver).

#include <childtune/config.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>

#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! Version 4: the block holding planes 8·level + 4·half .. + 3 of lane l of
//! super-group s (elements 256s + 32l .. + 31), word k = plane 8·level + 4·half + k.
CHILDTUNE_HD_INLINE constexpr std::uint64_t lane_block(std::uint64_t s, unsigned lane, unsigned half, unsigned level) {
    return 4 * (16 * s + 8 * half + lane) + level;
}

//! Version 4: a lane's 32 draws against the threshold, most significant bit
//! first (bit b for element 32l + b), as plane_compare for version 3.
struct lane_compare {
    std::uint32_t below = 0, tied = 0xFFFFFFFFu;
};
//! Folds in level `level`'s eight planes: words 0-3 of `first` (planes 8·level
//! .. + 3), then of `second`, each against its bit of the threshold.
CHILDTUNE_HD_INLINE constexpr void compare_lane_planes(lane_compare& c, const philox_block& first, const philox_block& second,
                                                       std::uint32_t threshold, unsigned level) {
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(c.below, c.tied, j < 4 ? first.w[j] : second.w[j - 4], ((threshold >> (31 - 8 * level - j)) & 1u) != 0);
}
//! Version 4: the keep bits of lane l of super-group s, continuing `c` from
//! level `level` on. A draw equal to the threshold in all 32 bits is not below it.
inline std::uint32_t lane_keep_bits_scalar(const philox_keep_params& p, std::uint64_t s, unsigned lane, lane_compare c = {},
                                           unsigned level = 0) {
    for (; c.tied != 0 && level < 4; ++level)
        compare_lane_planes(c, philox_keep_block(p, lane_block(s, lane, 0, level)), philox_keep_block(p, lane_block(s, lane, 1, level)),
                            p.threshold, level);
    return c.below;
}
// The queue entries of version 4 (plane_queue): `block` is the lane's level-0
// block of half 0, lane_block(s, l, 0, 0); `place` is 16 x (the super-group's
// first word in the chunk) + l, and the lane's bits are half l % 2 of word
// place / 16 + l / 2.

//! Scalar first pass of super-group s: its four keep words after level 0, and
//! its tied lanes queued.
inline void lane_first_scalar(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four, plane_queue& q,
                              std::uint32_t first_word) {
    std::uint32_t bits[8];
    for (unsigned lane = 0; lane < 8; ++lane) {
        lane_compare c;
        compare_lane_planes(c, philox_keep_block(p, lane_block(s, lane, 0, 0)), philox_keep_block(p, lane_block(s, lane, 1, 0)),
                            p.threshold, 0);
        bits[lane] = c.below;
        if (c.tied != 0) q.push(lane_block(s, lane, 0, 0), lane, c.tied, first_word);
    }
    for (unsigned w = 0; w < 4; ++w) four[w] = std::uint64_t{bits[2 * w]} | std::uint64_t{bits[2 * w + 1]} << 32;
}
//! Scalar level-1 pass of queue entry e.
inline void lane_level_scalar(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    lane_compare c{0, q.tied[e]};
    const std::uint64_t block = std::uint64_t{q.block_hi[e]} << 32 | q.block_lo[e];
    compare_lane_planes(c, philox_keep_block(p, block + 1), philox_keep_block(p, block + 32 + 1), p.threshold, 1);
    q.below[e] = c.below;
    q.tied[e] = c.tied;
}

//! Version 4's last step for queue entry e: levels 2 and 3 where the lane is
//! still tied after 16 bits, then its 32 bits into half l % 2 of its word.
inline void lane_finish_entry(const philox_keep_params& p, const plane_queue& q, std::size_t e, std::uint64_t* words) {
    std::uint32_t below = q.below[e];
    const unsigned lane = q.place[e] % 16;
    if (q.tied[e] != 0)
        below = lane_keep_bits_scalar(p, (std::uint64_t{q.block_hi[e]} << 32 | q.block_lo[e]) / 64, lane, {below, q.tied[e]}, 2);
    words[q.place[e] / 16 + lane / 2] |= std::uint64_t{below} << (32 * (lane % 2));
}
//! Version 4's queue finished (finish_queue, philox_planes.hpp).
template <std::size_t Lanes, auto level_one>
CHILDTUNE_ALWAYS_INLINE void lane_finish(const philox_keep_params& p, plane_queue& q, std::uint64_t* words) {
    finish_queue<Lanes, level_one, lane_finish_entry>(p, q, words);
}

} // namespace childtune::detail
