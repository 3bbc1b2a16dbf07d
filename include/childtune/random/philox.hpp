#pragma once
//! \file
//! Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random
//! numbers: as easy as 1, 2, 3" (SC'11), bit-compatible with Random123.
//!
//! Counter-based means a draw is a pure function of (key, counter): there is no
//! generator state to carry, split or synchronise. That is what lets a
//! Child-Tuning_F mask be recomputed anywhere (any thread, shard, rank or device)
//! from (seed, step, tensor key, element index) with zero memory and zero
//! communication.

#include <childtune/config.hpp>

#include <cstdint>

namespace childtune {

//! Four 32-bit words: a Philox counter or output block.
struct philox_block {
    //! The words, w[0] first (Random123's order).
    std::uint32_t w[4];
    //! Word-wise equality.
    friend constexpr bool operator==(const philox_block&, const philox_block&) = default;
};

//! The 64-bit Philox4x32 key.
struct philox_key {
    //! The key words, w[0] first (the seed's low 32 bits for Child-Tuning_F).
    std::uint32_t w[2];
};

namespace detail {
inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u; // golden ratio
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u; // sqrt(3) - 1

CHILDTUNE_HD constexpr void philox_round(std::uint32_t (&x)[4], std::uint32_t k0, std::uint32_t k1) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(philox_m0) * x[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(philox_m1) * x[2];
    const std::uint32_t y0 = static_cast<std::uint32_t>(p1 >> 32) ^ x[1] ^ k0;
    const std::uint32_t y2 = static_cast<std::uint32_t>(p0 >> 32) ^ x[3] ^ k1;
    x[0] = y0;
    x[1] = static_cast<std::uint32_t>(p1);
    x[2] = y2;
    x[3] = static_cast<std::uint32_t>(p0);
}
} // namespace detail

//! Philox4x32 with `Rounds` rounds (10 is the standard, crush-resistant choice).
template <int Rounds = 10>
CHILDTUNE_HD constexpr philox_block philox4x32(philox_block counter, philox_key key) {
    std::uint32_t x[4] = {counter.w[0], counter.w[1], counter.w[2], counter.w[3]};
    std::uint32_t k0 = key.w[0], k1 = key.w[1];
    for (int r = 0; r < Rounds; ++r) {
        if (r > 0) {
            k0 += detail::philox_w0;
            k1 += detail::philox_w1;
        }
        detail::philox_round(x, k0, k1);
    }
    return {{x[0], x[1], x[2], x[3]}};
}

} // namespace childtune
