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
//! gives two keep words by the same lane-wise compares.

#include <childtune/random/philox.hpp>

#include <cstdint>

namespace childtune::detail {

//! Everything a keep word depends on besides the group index.
struct philox_keep_params {
    std::uint32_t k0, k1;     //!< Philox key (the seed)
    std::uint32_t tensor_key; //!< counter word 2
    std::uint32_t step;       //!< counter word 3
    std::uint32_t threshold;  //!< version 1: keep iff the 32-bit draw < threshold (< 2^32);
                              //!< version 2: keep iff the 16-bit half < threshold (< 2^16)
    std::uint32_t version = 1; //!< the mask definition (mask/bernoulli.hpp): 1 or 2
};

//! Philox4x32-10 block `block` of the keep stream (counter {block lo, block hi,
//! tensor key, step}, key = the seed).
inline philox_block philox_keep_block(const philox_keep_params& p, std::uint64_t block) {
    return philox4x32({{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), p.tensor_key, p.step}},
                      {{p.k0, p.k1}});
}

//! Keep bits of elements 64w .. 64w + 63 (bit j for element 64w + j): the
//! definition the vector variants reproduce.
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

} // namespace childtune::detail
