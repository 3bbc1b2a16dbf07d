#pragma once
//! \file
//! The definition of Child-Tuning_F's keep bits, on every target:
//! the Philox4x32-10 stream, its parameters and the scalar keep word that the
//! vector generators (philox_sse2.hpp, philox_avx2.hpp, philox_avx512.hpp)
//! reproduce bit for bit.
//!
//! The element layouts (mask/bernoulli.hpp) are chosen for vector lanes. Version 1:
//! element i of group g = i / 64 takes output word (i % 64) / 16 of block
//! 16·g + i % 16, so comparing one output word across the 16 lanes yields 16
//! consecutive keep bits with no shuffling. Version 2 (16-bit thresholds): the
//! 16 blocks of group G serve elements 128·G .. 128·G + 127, the low halves of the
//! four words the first 64 and the high halves the next 64, so one Philox batch
//! gives two keep words by the same lane-wise compares. Version 3 (bit planes):
//! the 16 lanes of a 256-element super-group each hold 16 elements, one bit of
//! a 16-bit plane each, so a block's eight planes decide the top 8 bits of 16
//! draws at once, and a lane's next block is needed only while one of its
//! elements still ties the threshold (see philox_plane_lane_scalar). Version 4
//! is version 3 with ARS-7 blocks (random/ars.hpp) in place of Philox's: the
//! same counters, layout and comparisons, at a fraction of the vector
//! instructions where the CPU has AES-NI or VAES (random/detail/ars_x86.hpp).

#include <childtune/random/ars.hpp>
#include <childtune/random/philox.hpp>

#include <cstdint>

namespace childtune::detail {

//! How the CPU generators compute definition 4's ARS blocks (random/detail/
//! ars_x86.hpp): `automatic` takes the fastest this CPU has (VAES, else AES-NI,
//! else the scalar rounds); tests force each one to compare them. All give the
//! same bits.
enum class aes_path : std::uint8_t { automatic = 0, software = 1, aesni = 2, vaes = 3 };

//! Everything a keep word depends on besides the group index.
struct philox_keep_params {
    std::uint32_t k0, k1;     //!< Philox key (the seed)
    std::uint32_t tensor_key; //!< counter word 2
    std::uint32_t step;       //!< counter word 3
    std::uint32_t threshold;  //!< versions 1, 3 and 4: keep iff the 32-bit draw < threshold (< 2^32);
                              //!< version 2: keep iff the 16-bit half < threshold (< 2^16)
    std::uint32_t version = 1; //!< the mask definition (mask/bernoulli.hpp): 1, 2, 3 or 4
    aes_path aes = aes_path::automatic; //!< version 4 on x86: the instructions its AES rounds use
};

// What sets the mask definitions apart, asked by name rather than by number
// (a new definition is a new answer here, plus its passes):
//! Whether definition `version` draws 32-bit draws as bit planes, decided
//! lazily (versions 3 and 4; versions 1 and 2 compare whole draws).
CHILDTUNE_HD_INLINE constexpr bool keeps_by_planes(std::uint32_t version) { return version >= 3; }
//! Whether a lane of definition `version`'s planes is consecutive elements
//! (version 4: 32 of them), not elements 16 apart (version 3).
CHILDTUNE_HD_INLINE constexpr bool lanes_are_consecutive(std::uint32_t version) { return version == 4; }
//! Whether definition `version`'s blocks come from ARS-7 (version 4), not
//! Philox4x32-10 (versions 1-3).
CHILDTUNE_HD_INLINE constexpr bool blocks_by_ars(std::uint32_t version) { return version == 4; }

//! The ARS-7 key of definition 4: the seed in the low 64 bits.
CHILDTUNE_HD_INLINE constexpr philox_block ars_keep_key(std::uint32_t k0, std::uint32_t k1) { return {{k0, k1, 0, 0}}; }

//! Block `block` of the keep stream: the counter {block lo, block hi, tensor
//! key, step} under the seed, through Philox4x32-10 (versions 1-3) or ARS-7
//! (version 4).
CHILDTUNE_HD_INLINE philox_block keep_stream_block(std::uint32_t k0, std::uint32_t k1, std::uint32_t tensor_key,
                                                   std::uint32_t step, std::uint32_t version, std::uint64_t block) {
    const philox_block counter{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), tensor_key, step}};
    if (blocks_by_ars(version)) return ars4x32<7>(counter, ars_keep_key(k0, k1));
    return philox4x32(counter, {{k0, k1}});
}
inline philox_block philox_keep_block(const philox_keep_params& p, std::uint64_t block) {
    return keep_stream_block(p.k0, p.k1, p.tensor_key, p.step, p.version, block);
}

//! Version 3: the Philox block holding planes 8·level .. 8·level + 7 of lane m
//! of super-group s (elements 256s + m + 16k, k = 0 .. 15).
CHILDTUNE_HD constexpr std::uint64_t plane_block(std::uint64_t s, unsigned m, unsigned level) {
    return 4 * (16 * s + m) + level;
}

//! Versions 3 and 4: folds one plane into a most-significant-first comparison
//! of draws with the threshold, for every draw whose bit the plane holds (a
//! lane's word, or vector registers of them: V is any type with bitwise
//! operators). Once a draw's bit differs from the threshold's it is decided:
//! below where the threshold has the 1, no longer tied either way.
template <class V>
CHILDTUNE_HD_INLINE constexpr void fold_plane(V& below, V& tied, const V& plane, bool threshold_bit) {
    if (threshold_bit) {
        below |= tied & ~plane;
        tied &= plane;
    } else {
        tied &= ~plane;
    }
}

//! Version 3: a lane's 16 draws compared with the threshold, most significant
//! bit first. Bit k of `below` is set once draw k is known to be below the
//! threshold; bit k of `tied` while its leading bits equal the threshold's.
struct plane_compare {
    std::uint32_t below = 0, tied = 0xFFFFu;
};
//! Folds in one block's planes: plane j is 16-bit half j % 2 of word j / 2 and
//! holds bit 31 - (8·level + j) of the lane's 16 draws (bit k of the plane for
//! draw k), compared with the same bit of the threshold.
CHILDTUNE_HD constexpr void compare_planes(plane_compare& c, const philox_block& out, std::uint32_t threshold,
                                           unsigned level) {
    for (unsigned j = 0; j < 8; ++j)
        fold_plane(c.below, c.tied, (out.w[j / 2] >> (16 * (j % 2))) & 0xFFFFu, ((threshold >> (31 - 8 * level - j)) & 1u) != 0);
}
//! Version 3: the keep bits (bit k for element 256s + m + 16k) of lane m of
//! super-group s, continuing `c` from block `level` on. A draw equal to the
//! threshold in all 32 bits is not below it.
inline std::uint32_t philox_plane_lane_scalar(const philox_keep_params& p, std::uint64_t s, unsigned m,
                                              plane_compare c = {}, unsigned level = 0) {
    for (; c.tied != 0 && level < 4; ++level) compare_planes(c, philox_keep_block(p, plane_block(s, m, level)), p.threshold, level);
    return c.below;
}
//! Version 3: lane m's 16 keep bits at their places in the super-group's four
//! keep words (element 256s + m + 16k is bit 16·(k % 4) + m of word 4s + k / 4).
//! One multiplication spreads a nibble's four bits to bits 0, 16, 32 and 48
//! (the four shifted copies of the nibble do not overlap), with no branch per bit.
inline void scatter_lane_bits(std::uint32_t below, unsigned m, std::uint64_t* four) {
    for (unsigned w = 0; w < 4; ++w)
        four[w] |= ((std::uint64_t{(below >> (4 * w)) & 0xFu} * 0x0000200040008001ull) & 0x0001000100010001ull) << m;
}

//! Versions 1 and 2: keep bits of elements 64w .. 64w + 63 (bit j for element
//! 64w + j), the definition the vector variants reproduce. (The plane
//! definitions' scalar passes are plane_first_scalar, philox_planes.hpp, and
//! lane_first_scalar, lane_planes.hpp.)
inline std::uint64_t philox_keep_word_scalar(const philox_keep_params& p, std::uint64_t w) {
    std::uint64_t word = 0;
    if (p.version == 1) {
        for (unsigned lane = 0; lane < 16; ++lane) {
            const auto out = philox_keep_block(p, 16 * w + lane);
            for (unsigned j = 0; j < 4; ++j) word |= std::uint64_t{out.w[j] < p.threshold} << (16 * j + lane);
        }
        return word;
    }
    const unsigned half = 16 * static_cast<unsigned>(w & 1); // word w is half w % 2 of group w / 2
    for (unsigned lane = 0; lane < 16; ++lane) {
        const auto out = philox_keep_block(p, 16 * (w >> 1) + lane);
        for (unsigned j = 0; j < 4; ++j)
            word |= std::uint64_t{((out.w[j] >> half) & 0xFFFFu) < p.threshold} << (16 * j + lane);
    }
    return word;
}
//! Version 2: words 2G and 2G + 1, which one batch of 16 blocks serves.
inline void philox_keep_pair_scalar(const philox_keep_params& p, std::uint64_t group, std::uint64_t* two) {
    two[0] = philox_keep_word_scalar(p, 2 * group);
    two[1] = philox_keep_word_scalar(p, 2 * group + 1);
}

} // namespace childtune::detail
