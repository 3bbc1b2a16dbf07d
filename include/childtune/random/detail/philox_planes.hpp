#pragma once
//! \file
//! Keep words of mask definition 3 (bit planes, mask/bernoulli.hpp) for runs of
//! super-groups, on any instruction set: the driver that the scalar, AVX2 and
//! AVX-512 generators plug into.
//!
//! A super-group is 256 elements, four keep words, 16 lanes. The first pass
//! computes every lane's first Philox block and decides most of its 16 draws;
//! the lanes with a draw still tied to the threshold are queued, and a second
//! pass computes their next block, packed densely into vector lanes (in a chunk
//! of 16 super-groups about 16 of 256 lanes are queued: one AVX-512 batch, two
//! AVX2 ones). The very rare lane still tied after that (probability about
//! 16 · 2^-16) finishes with the scalar definition. Queuing instead of running
//! every lane's second block in step is what halves the work: in lockstep, a
//! batch of 16 lanes needs a second block whenever one of its 256 draws does,
//! which is two times in three.

#include <childtune/config.hpp>
#include <childtune/random/detail/philox_keep.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! Super-groups per chunk: how many first passes share one queue.
inline constexpr std::size_t plane_chunk = 16;

//! The lanes still tied after their first block, as arrays vector lanes load.
//! A lane's keep bits decided by level 0 are already written; level 1 starts
//! from `below` = 0, so it yields exactly the bits still to be set.
struct plane_queue {
    //! 16 lanes per super-group, and room for one vector's padding. (The
    //! vector first passes store whole vectors of slots from `count` on, used
    //! or not: before super-group g at most 16·g are used, so those stores end
    //! by 16·plane_chunk.)
    static constexpr std::size_t capacity = 16 * plane_chunk + 16;
    std::uint32_t block_lo[capacity], block_hi[capacity]; //!< the lane's level-0 block, plane_block(s, m, 0)
    std::uint32_t tied[capacity];                         //!< its tied draws after level 0 (then 1)
    std::uint32_t place[capacity];                        //!< 16 x (its super-group's first word in the chunk) + m
    std::uint32_t below[capacity];                        //!< the keep bits level 1 adds
    std::size_t count = 0;

    void push(std::uint64_t block, std::uint32_t lane, std::uint32_t tied_draws, std::uint32_t first_word) {
        block_lo[count] = static_cast<std::uint32_t>(block);
        block_hi[count] = static_cast<std::uint32_t>(block >> 32);
        tied[count] = tied_draws;
        place[count] = 16 * first_word + lane;
        ++count;
    }
    //! Zeroes the entries after the last up to a multiple of `lanes`, so that a
    //! vector pass over the last batch reads defined values (and ignores them).
    void pad(std::size_t lanes) {
        for (std::size_t e = count; e % lanes != 0; ++e) block_lo[e] = block_hi[e] = tied[e] = 0;
    }
};

//! For a vector's lane mask m (8 lanes), the lanes whose bit is set in order,
//! one byte each, low byte first (the rest 0): the permutation that packs
//! those lanes to the front, so a vector generator queues its tied lanes
//! without a branch per lane.
inline constexpr auto plane_pack_indices = [] {
    std::array<std::uint64_t, 256> t{};
    for (unsigned m = 0; m < 256; ++m) {
        unsigned n = 0;
        for (unsigned lane = 0; lane < 8; ++lane)
            if ((m >> lane) & 1u) t[m] |= std::uint64_t{lane} << (8 * n++);
    }
    return t;
}();

//! Scalar first pass of super-group s: its four keep words after level 0 in
//! four[0..3], and its tied lanes queued.
inline void plane_first_scalar(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four, plane_queue& q,
                               std::uint32_t first_word) {
    four[0] = four[1] = four[2] = four[3] = 0;
    for (unsigned m = 0; m < 16; ++m) {
        plane_compare c;
        const std::uint64_t block = plane_block(s, m, 0);
        compare_planes(c, philox_keep_block(p, block), p.threshold, 0);
        scatter_lane_bits(c.below, m, four);
        if (c.tied != 0) q.push(block, m, c.tied, first_word);
    }
}
//! Scalar level-1 pass of queue entry e.
inline void plane_level_scalar(const philox_keep_params& p, plane_queue& q, std::size_t e) {
    plane_compare c{0, q.tied[e]};
    const std::uint64_t block = (std::uint64_t{q.block_hi[e]} << 32 | q.block_lo[e]) + 1;
    compare_planes(c, philox_keep_block(p, block), p.threshold, 1);
    q.below[e] = c.below;
    q.tied[e] = c.tied;
}

//! Finishes the lanes queued by first passes into `words` (the chunk's keep
//! words, indexed by the queue's places): level 1 by `level_one(p, queue, e)`
//! for entries e .. e + Lanes - 1, then `finish_entry(p, queue, e, words)`
//! for each entry (levels 2 and 3 of a lane still tied, its bits into place).
template <std::size_t Lanes, auto level_one, auto finish_entry>
CHILDTUNE_ALWAYS_INLINE void finish_queue(const philox_keep_params& p, plane_queue& q, std::uint64_t* words) {
    q.pad(Lanes);
    for (std::size_t e = 0; e < q.count; e += Lanes) level_one(p, q, e);
    for (std::size_t e = 0; e < q.count; ++e) finish_entry(p, q, e, words);
    q.count = 0;
}
//! Version 3's last step for queue entry e: levels 2 and 3 where the lane is
//! still tied after 16 bits, then its 16 bits scattered into the four words.
inline void plane_finish_entry(const philox_keep_params& p, const plane_queue& q, std::size_t e, std::uint64_t* words) {
    std::uint32_t below = q.below[e];
    const unsigned lane = q.place[e] % 16;
    if (q.tied[e] != 0)
        below = philox_plane_lane_scalar(p, (std::uint64_t{q.block_hi[e]} << 32 | q.block_lo[e]) / 64, lane, {below, q.tied[e]}, 2);
    scatter_lane_bits(below, lane, words + q.place[e] / 16);
}
//! Version 3's queue finished (finish_queue).
template <std::size_t Lanes, auto level_one>
CHILDTUNE_ALWAYS_INLINE void plane_finish(const philox_keep_params& p, plane_queue& q, std::uint64_t* words) {
    finish_queue<Lanes, level_one, plane_finish_entry>(p, q, words);
}

//! Keep words first .. first + count - 1 of definition 3: `first_pass(p, s,
//! four, queue, word)` runs level 0 of super-group s, and after every chunk of
//! them `finish_queue(p, queue, words)` the queued lanes (plane_finish).
template <auto first_pass, auto finish_queue>
void plane_words(const philox_keep_params& p, std::uint64_t first, std::size_t count, std::uint64_t* out) {
    plane_queue q;
    std::uint64_t staged[4 * plane_chunk];
    const std::uint64_t end = first + count;
    for (std::uint64_t w = first; w < end;) {
        const std::uint64_t s0 = w / 4;
        const std::size_t groups = static_cast<std::size_t>(std::min<std::uint64_t>(plane_chunk, (end - 4 * s0 + 3) / 4));
        // Whole super-groups inside the run are written in place; a ragged start
        // or end is staged and copied.
        const bool in_place = w % 4 == 0 && end - w >= 4 * groups;
        std::uint64_t* const words = in_place ? out + (w - first) : staged;
        for (std::size_t g = 0; g < groups; ++g) first_pass(p, s0 + g, words + 4 * g, q, static_cast<std::uint32_t>(4 * g));
        finish_queue(p, q, words);
        const std::uint64_t last = std::min<std::uint64_t>(end, 4 * (s0 + groups));
        if (!in_place) std::copy(staged + (w - 4 * s0), staged + (last - 4 * s0), out + (w - first));
        w = last;
    }
}

} // namespace childtune::detail
