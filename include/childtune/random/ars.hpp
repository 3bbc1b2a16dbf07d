#pragma once
//! \file
//! ARS-R, the AES-round counter-based generator of Salmon et al., "Parallel
//! random numbers: as easy as 1, 2, 3" (SC'11), bit-compatible with Random123's
//! `ars4x32_R`: the counter XOR the key, then R - 1 AES rounds (`aesenc`) and one
//! last round (`aesenclast`), the 128-bit key advancing by a Weyl constant in
//! each 64-bit half before every round. Random123 finds five rounds enough to
//! pass BigCrush and recommends seven for a margin.
//!
//! The scalar form here is a table-driven AES round that gives the bits of
//! x86's `aesenc` exactly, on every host and in CUDA device code; the CPU
//! generators (random/detail/ars_x86.hpp) run the same rounds with AES-NI or
//! VAES, several blocks per instruction, where the CPU has them. An AES round
//! costs about a fifth of a Philox4x32 round's instructions in AVX2 code, which
//! is why mask definition 4 (mask/bernoulli.hpp) draws with it.

#include <childtune/config.hpp>
#include <childtune/random/philox.hpp>

#include <cstdint>

namespace childtune {

namespace detail {
//! The AES S-box and one MixColumns table, built at compile time from the
//! field GF(2^8) (FIPS-197, section 5.1.1), not typed in: `mix[x]` is the column
//! (2·S(x), S(x), S(x), 3·S(x)), low byte first, and its rotations by 8, 16 and
//! 24 bits are the other three rows' contributions.
struct aes_tables {
    std::uint8_t sbox[256];
    std::uint32_t mix[256];
};
constexpr std::uint8_t aes_xtime(std::uint8_t x) {
    return static_cast<std::uint8_t>((x << 1) ^ ((x & 0x80) != 0 ? 0x1B : 0x00));
}
constexpr aes_tables make_aes_tables() {
    aes_tables t{};
    std::uint8_t power[255] = {}, log[256] = {};
    std::uint8_t x = 1; // 3 generates the multiplicative group
    for (int i = 0; i < 255; ++i) {
        power[i] = x;
        log[x] = static_cast<std::uint8_t>(i);
        x = static_cast<std::uint8_t>(x ^ aes_xtime(x));
    }
    for (int v = 0; v < 256; ++v) {
        const std::uint8_t inverse = v == 0 ? 0 : power[(255 - log[v]) % 255];
        std::uint8_t s = inverse;
        for (int r = 1; r < 5; ++r) s = static_cast<std::uint8_t>(s ^ ((inverse << r) | (inverse >> (8 - r))));
        s = static_cast<std::uint8_t>(s ^ 0x63);
        t.sbox[v] = s;
        const std::uint8_t twice = aes_xtime(s), thrice = static_cast<std::uint8_t>(twice ^ s);
        t.mix[v] = std::uint32_t{twice} | std::uint32_t{s} << 8 | std::uint32_t{s} << 16 | std::uint32_t{thrice} << 24;
    }
    return t;
}
inline constexpr aes_tables aes_host_tables = make_aes_tables();
#if defined(__CUDACC__)
//! Device code reads its own copy (a host variable is not addressable there).
static __device__ const aes_tables aes_device_tables = make_aes_tables();
#endif
CHILDTUNE_HD_INLINE const aes_tables& aes_tables_here() {
#if defined(__CUDA_ARCH__)
    return aes_device_tables;
#else
    return aes_host_tables;
#endif
}

CHILDTUNE_HD_INLINE constexpr std::uint32_t aes_rotl(std::uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

//! Output column c of an AES round before its round key: row r comes from row
//! r of input column (c + r) % 4, which the caller passes as `w0` .. `w3`
//! (ShiftRows), through SubBytes and, unless `last`, MixColumns.
CHILDTUNE_HD_INLINE std::uint32_t aes_column(const aes_tables& t, std::uint32_t w0, std::uint32_t w1, std::uint32_t w2,
                                             std::uint32_t w3, bool last) {
    const std::uint8_t a0 = static_cast<std::uint8_t>(w0);
    const std::uint8_t a1 = static_cast<std::uint8_t>(w1 >> 8);
    const std::uint8_t a2 = static_cast<std::uint8_t>(w2 >> 16);
    const std::uint8_t a3 = static_cast<std::uint8_t>(w3 >> 24);
    if (last)
        return std::uint32_t{t.sbox[a0]} | std::uint32_t{t.sbox[a1]} << 8 | std::uint32_t{t.sbox[a2]} << 16 |
               std::uint32_t{t.sbox[a3]} << 24;
    return t.mix[a0] ^ aes_rotl(t.mix[a1], 8) ^ aes_rotl(t.mix[a2], 16) ^ aes_rotl(t.mix[a3], 24);
}

//! One AES encryption round as x86's `aesenc` (`last`: `aesenclast`) computes
//! it, on the 128-bit state w[0] + 2^32 w[1] + ... (byte n of the state is byte
//! n of that number, row n % 4 of column n / 4): ShiftRows, SubBytes,
//! MixColumns (not in the last round), then XOR the round key. The four
//! columns are written out rather than looped over: GCC kept a loop's state in
//! memory, which made the rounds three times slower on CPUs without AES-NI.
CHILDTUNE_HD_INLINE philox_block aes_round(const philox_block& s, const philox_block& key, bool last) {
    const aes_tables& t = aes_tables_here();
    return {{aes_column(t, s.w[0], s.w[1], s.w[2], s.w[3], last) ^ key.w[0],
             aes_column(t, s.w[1], s.w[2], s.w[3], s.w[0], last) ^ key.w[1],
             aes_column(t, s.w[2], s.w[3], s.w[0], s.w[1], last) ^ key.w[2],
             aes_column(t, s.w[3], s.w[0], s.w[1], s.w[2], last) ^ key.w[3]}};
}

inline constexpr std::uint64_t ars_weyl_lo = 0x9E3779B97F4A7C15ull; // golden ratio
inline constexpr std::uint64_t ars_weyl_hi = 0xBB67AE8584CAA73Bull; // sqrt(3) - 1

//! The key after `r` advances (each 64-bit half by its Weyl constant, modulo 2^64).
CHILDTUNE_HD_INLINE philox_block ars_round_key(const philox_block& key, unsigned r) {
    const std::uint64_t lo = (std::uint64_t{key.w[1]} << 32 | key.w[0]) + r * ars_weyl_lo;
    const std::uint64_t hi = (std::uint64_t{key.w[3]} << 32 | key.w[2]) + r * ars_weyl_hi;
    return {{static_cast<std::uint32_t>(lo), static_cast<std::uint32_t>(lo >> 32), static_cast<std::uint32_t>(hi),
             static_cast<std::uint32_t>(hi >> 32)}};
}
} // namespace detail

//! ARS with `Rounds` AES rounds (1 to 10) of the 128-bit `counter` under the
//! 128-bit `key`; words w[0] first, as Random123's ars4x32.
template <int Rounds = 7>
CHILDTUNE_HD_INLINE philox_block ars4x32(philox_block counter, philox_block key) {
    static_assert(Rounds >= 1 && Rounds <= 10, "ARS takes 1 to 10 rounds");
    philox_block s{{counter.w[0] ^ key.w[0], counter.w[1] ^ key.w[1], counter.w[2] ^ key.w[2], counter.w[3] ^ key.w[3]}};
    for (unsigned r = 1; r < static_cast<unsigned>(Rounds); ++r) s = detail::aes_round(s, detail::ars_round_key(key, r), false);
    return detail::aes_round(s, detail::ars_round_key(key, static_cast<unsigned>(Rounds)), true);
}

} // namespace childtune
