#pragma once
//! \file
//! The AVX-512 encoder and decoder of the 8-bit blockwise state
//! (numeric/blockwise8.hpp) for CPUs with VBMI (Ice Lake and later, AMD Zen 4
//! and later; the encoder also uses VBMI2): sixty-four values at a time, and
//! no gather. On AMD Zen a sixteen-lane gather costs about two cycles per
//! lane, which made the bucket gather of blockwise8_avx512.hpp most of the
//! 8-bit step; VBMI's byte permute looks up 64 lanes of a 128-entry table in
//! one instruction. The decoder looks up each byte of the values' float
//! encodings that way (decode_block_avx512_vbmi).
//!
//! The encoder's idea: cut each octave of magnitudes into 2^j equal *cells*, j chosen per
//! octave so that no cell holds more than two of the map's thresholds (coarse
//! where the map is sparse), at most 127 cells per sign (254 for the unsigned
//! map, which has one sign; the published maps need 122 and 232, and the last
//! cells are kept for NaNs and, unsigned, values not above 0). A value's cell
//! is its octave's first cell plus the top j bits of its mantissa (j <= 7, so
//! the upper half of its float encoding holds them, and the cells are computed
//! in 16-bit lanes: 32 values per instruction, where 32-bit lanes took twice
//! the instructions; a VBMI2 funnel shift of both halves gives the remainder).
//! Per cell, byte tables hold the number of thresholds below the cell and the top 15 bits
//! of the mantissa remainder (the bits below the cell's j) of each threshold
//! inside it, or 0xFFFF for none. NaNs (code 255) and, for the unsigned map,
//! values not above 0 (code 0) go to cells of their own; the unsigned map's "a
//! positive value never becomes 0" is in its tables. Within a cell every float
//! shares the bits above the remainder, so "threshold < x" is a comparison of
//! remainders (reversed, by complementing both, for negative x): code = below +
//! [x's 15 bits > t1's] + [x's > t2's]. When x's top 15 bits equal a
//! threshold's, the lower bits would decide; the group of 64 is then encoded
//! again by the gather encoder, which compares whole floats (a lane hits this
//! with a probability of about 2^-14, a group in about 0.5 % of cases on random
//! data). So the codes are the scalar encoder's bit for bit, and
//! tests/numeric/blockwise8.cpp compares them.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/numeric/detail/blockwise8_avx2.hpp>
#include <childtune/numeric/detail/blockwise8_avx512.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

CHILDTUNE_AVX512_WARNINGS_BEGIN // _mm512 intrinsics under GCC 12 (config.hpp)

namespace childtune::detail {

//! The cell tables of one dynamic map (the file comment gives the scheme).
//! Octave slot s = max(biased exponent - 96, 0): slot 0 holds every magnitude
//! below 2^-30 (no threshold lies there), slot 31 the magnitude 1.
struct dynamic_map_cells {
    //! Per slot: its first cell (positive side) | (8 - j) << 8, where j <= 7 is
    //! the number of mantissa bits that pick the cell in the slot.
    alignas(64) std::uint16_t slot_word[32];
    alignas(64) std::uint8_t below[256];      //!< thresholds below the cell (negative side from 128)
    //! Low and high bytes of the two thresholds' 15-bit remainders (complemented
    //! on the negative side), 0xFFFF where the cell holds fewer.
    alignas(64) std::uint8_t first_low[256], first_high[256], second_low[256], second_high[256];
    //! The decoder's table: byte b of each map value's float encoding in value_bytes[b].
    alignas(64) std::uint8_t value_bytes[4][256];
};

//! The cell of a NaN: code 255, as the scalar encoder gives it.
inline constexpr std::uint32_t nan_cell = 255;
//! The unsigned map's cell of zero and negative values: code 0.
inline constexpr std::uint32_t non_positive_cell = 254;

//! The tables for a map's 256 ascending `values` and 255 `thresholds`;
//! `is_signed`: both signs (127 cells each) or positive values only (254 cells).
inline dynamic_map_cells make_dynamic_map_cells(const float* values, const float* thresholds, bool is_signed) {
    const auto below = [&](float x) { // thresholds < x
        return static_cast<std::uint32_t>(std::lower_bound(thresholds, thresholds + 255, x) - thresholds);
    };
    const auto not_above = [&](float x) { // thresholds <= x
        return static_cast<std::uint32_t>(std::upper_bound(thresholds, thresholds + 255, x) - thresholds);
    };
    const auto magnitude = [](std::uint32_t bits) { return std::bit_cast<float>(bits); };
    // Slot s covers the magnitude bits [slot_begin(s), slot_begin(s + 1)).
    const auto slot_begin = [](std::uint32_t s) { return s == 0 ? 0u : (96u + s) << 23; };
    const std::uint32_t sides = is_signed ? 2 : 1, side_cells = is_signed ? 127 : 254;
    // Thresholds inside the cell of magnitude bits [a, b): in [a, b) for x >= 0, in (-b, -a) for x < 0.
    const auto inside = [&](std::uint32_t side, std::uint32_t a, std::uint32_t b) {
        return side == 0 ? below(magnitude(b)) - below(magnitude(a)) : below(-magnitude(a)) - not_above(-magnitude(b));
    };
    dynamic_map_cells c{};
    std::fill(std::begin(c.first_low), std::end(c.first_low), 0xFF);
    std::fill(std::begin(c.first_high), std::end(c.first_high), 0xFF);
    std::fill(std::begin(c.second_low), std::end(c.second_low), 0xFF);
    std::fill(std::begin(c.second_high), std::end(c.second_high), 0xFF);
    c.below[nan_cell] = 255;
    for (std::size_t v = 0; v < 256; ++v)
        for (unsigned b = 0; b < 4; ++b) c.value_bytes[b][v] = static_cast<std::uint8_t>(std::bit_cast<std::uint32_t>(values[v]) >> 8 * b);
    std::uint32_t next = 0;
    for (std::uint32_t s = 0; s < 32; ++s) {
        const std::uint32_t begin = slot_begin(s), end = s == 31 ? 128u << 23 : slot_begin(s + 1);
        // The fewest prefix bits j that leave at most two thresholds in each cell
        // (slot 0 spans many octaves: one cell, which must hold none; at most 7
        // bits, the mantissa bits in the upper half of a float).
        const auto fits = [&](std::uint32_t j) {
            const std::uint32_t width = (end - begin) >> j;
            for (std::uint32_t side = 0; side < sides; ++side)
                for (std::uint32_t k = 0; k < (1u << j); ++k)
                    if (inside(side, begin + k * width, begin + (k + 1) * width) > (s == 0 ? 0u : 2u)) return false;
            return true;
        };
        std::uint32_t j = 0;
        while (!fits(j))
            if (++j > 7 || s == 0) fail("dynamic map: no encoder cells for the octave of 2^" + std::to_string(int(s) - 31));
        const std::uint32_t width = (end - begin) >> j;
        c.slot_word[s] = static_cast<std::uint16_t>(next | (8 - j) << 8);
        for (std::uint32_t k = 0; k < (1u << j); ++k, ++next) {
            if (next >= side_cells) fail("dynamic map: more than " + std::to_string(side_cells) + " encoder cells");
            const std::uint32_t a = begin + k * width, b = a + width;
            for (std::uint32_t side = 0; side < sides; ++side) {
                const std::uint32_t cell = side * 128 + next;
                std::uint32_t first = side == 0 ? below(magnitude(a)) : not_above(-magnitude(b));
                std::uint32_t count = inside(side, a, b);
                if (!is_signed && first == 0) {
                    // A positive v never becomes 0 (numeric/blockwise8.hpp): max(1, [x > t0] + [x > t1])
                    // is 1 + [x > t1], so the cell starts at 1 without the first threshold.
                    c.below[cell] = 1;
                    first += count > 0 ? 1 : 0;
                    count -= count > 0 ? 1 : 0;
                } else {
                    c.below[cell] = static_cast<std::uint8_t>(first);
                }
                for (std::uint32_t t = 0; t < count; ++t) {
                    const std::uint32_t bits = std::bit_cast<std::uint32_t>(thresholds[first + t]);
                    std::uint32_t remainder = ((bits << j) & 0x7fffffu) >> 8; // the top 15 bits below the prefix
                    if (side == 1) remainder ^= 0x7fffu; // a negative x is above t when its magnitude is below
                    (t == 0 ? c.first_low : c.second_low)[cell] = static_cast<std::uint8_t>(remainder);
                    (t == 0 ? c.first_high : c.second_high)[cell] = static_cast<std::uint8_t>(remainder >> 8);
                }
            }
        }
    }
    return c;
}

#if CHILDTUNE_HAS_AVX2_DISPATCH
#define CHILDTUNE_VBMI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")))
#define CHILDTUNE_VBMI2_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512vbmi2")))

//! A 256-entry byte table in four registers.
struct byte_table256 {
    __m512i part[4]; //!< entries [64p, 64p + 64) in part[p]
};
//! The table t[0 .. 256) in registers.
CHILDTUNE_VBMI_TARGET inline byte_table256 load_byte_table256(const std::uint8_t* t) {
    return {{_mm512_loadu_si512(t), _mm512_loadu_si512(t + 64), _mm512_loadu_si512(t + 128), _mm512_loadu_si512(t + 192)}};
}
//! Sixty-four lookups: two two-register byte permutes, then bit 7 of the index picks.
CHILDTUNE_VBMI_TARGET CHILDTUNE_ALWAYS_INLINE __m512i lookup_bytes(const byte_table256& t, __m512i index, __mmask64 upper) {
    return _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.part[0], index, t.part[1]),
                                  _mm512_permutex2var_epi8(t.part[2], index, t.part[3]));
}

//! The order of 64 bytes that a pack of four vectors of 32-bit lanes gives, and
//! that four unpacks into 32-bit lanes undo: byte 16L + 4k + q holds value
//! 16k + 4L + q. It is its own inverse.
struct lane_interleave_table {
    alignas(64) std::uint8_t order[64]; //!< order[v]: the byte that holds value v
};
//! The order, built once at compile time.
inline constexpr lane_interleave_table lane_interleave = [] {
    lane_interleave_table t{};
    for (unsigned v = 0; v < 64; ++v) t.order[v] = static_cast<std::uint8_t>(16 * ((v >> 2) & 3) + 4 * (v >> 4) + (v & 3));
    return t;
}();
//! lane_interleave in a register.
CHILDTUNE_VBMI_TARGET inline __m512i lane_interleave_order() { return _mm512_load_si512(lane_interleave.order); }

//! Thirty-two values' cells and 15-bit remainders (complemented for negative x), in 16-bit lanes.
struct cells32 {
    __m512i cell;      //!< cell index, 0 .. 255
    __m512i remainder; //!< 0 .. 0x7fff
};

//! The upper and lower 16-bit halves of the encodings of x[0 .. 32) / scale, in
//! the order of a 32-to-16-bit pack (lane L holds values 4L .. 4L + 3 of each
//! sixteen): the order the byte lookups' unpacks give back (the encoder's loop).
CHILDTUNE_VBMI2_TARGET CHILDTUNE_ALWAYS_INLINE void quotient_halves(const float* x, __m512 scale, __m512i& upper,
                                                                    __m512i& lower) {
    const __m512i a = _mm512_castps_si512(_mm512_div_ps(_mm512_loadu_ps(x), scale));
    const __m512i b = _mm512_castps_si512(_mm512_div_ps(_mm512_loadu_ps(x + 16), scale));
    upper = _mm512_packus_epi32(_mm512_srli_epi32(a, 16), _mm512_srli_epi32(b, 16));
    const __m512i low_half = _mm512_set1_epi32(0xffff);
    lower = _mm512_packus_epi32(_mm512_and_si512(a, low_half), _mm512_and_si512(b, low_half));
}

//! Cells and remainders of the quotients with these halves (the file comment gives the scheme).
CHILDTUNE_VBMI2_TARGET CHILDTUNE_ALWAYS_INLINE cells32 cells_of(__m512i slot_words, __m512i upper, __m512i lower,
                                                                bool is_signed) {
    const __m512i magnitude = _mm512_and_si512(upper, _mm512_set1_epi16(0x7fff));
    // The permute reads bits 0-4 of the slot: a NaN's (159) is replaced below.
    const __m512i slot = _mm512_subs_epu16(_mm512_srli_epi16(magnitude, 7), _mm512_set1_epi16(96));
    const __m512i word = _mm512_permutexvar_epi16(slot, slot_words);
    const __m512i shift = _mm512_srli_epi16(word, 8); // 8 - j, 1 .. 8
    // The top j of the 7 mantissa bits: (mantissa << 1) >> (8 - j).
    const __m512i prefix = _mm512_srlv_epi16(_mm512_and_si512(_mm512_add_epi16(upper, upper), _mm512_set1_epi16(0xfe)), shift);
    __m512i cell = _mm512_add_epi16(_mm512_and_si512(word, _mm512_set1_epi16(0xff)), prefix);
    // Mantissa bits 22 - j .. 8 - j: the 32-bit encoding shifted right by 8 - j.
    __m512i remainder = _mm512_shrdv_epi16(lower, upper, shift);
    if (is_signed) { // negative: cell + 128, remainder complemented
        const __m512i sign = _mm512_srai_epi16(upper, 15);
        cell = _mm512_ternarylogic_epi32(cell, sign, _mm512_set1_epi16(128), 0xF8);                // a | (b & c)
        remainder = _mm512_ternarylogic_epi32(remainder, sign, _mm512_set1_epi16(0x7fff), 0x28); // (a ^ b) & c
    } else { // not above 0: negative (sign bit set) or +0 (both halves 0)
        remainder = _mm512_and_si512(remainder, _mm512_set1_epi16(0x7fff));
        const __m512i zero = _mm512_setzero_si512();
        const __mmask32 not_positive =
            _mm512_cmplt_epi16_mask(upper, zero) | _mm512_cmpeq_epi16_mask(_mm512_or_si512(upper, lower), zero);
        cell = _mm512_mask_mov_epi16(cell, not_positive, _mm512_set1_epi16(static_cast<short>(non_positive_cell)));
    }
    // A quotient is at most 1 in magnitude or a quiet NaN (mantissa bit 22 set):
    // NaNs are the upper halves above that of infinity.
    const __mmask32 nan = _mm512_cmpgt_epu16_mask(magnitude, _mm512_set1_epi16(0x7f80));
    cell = _mm512_mask_mov_epi16(cell, nan, _mm512_set1_epi16(static_cast<short>(nan_cell)));
    return {cell, remainder};
}

//! Codes of x[0 .. k) / absmax for the largest multiple k of 64 not above n;
//! returns k. Reads t.cells (not null).
CHILDTUNE_VBMI2_TARGET inline std::size_t encode_block_avx512_vbmi(const dynamic_map_tables& t, const float* x, std::size_t n,
                                                                   float absmax, std::uint8_t* codes) {
    const dynamic_map_cells& cells = *t.cells;
    const __m512 scale = _mm512_set1_ps(absmax);
    const __m512i slot_words = _mm512_load_si512(cells.slot_word);
    const byte_table256 below = load_byte_table256(cells.below);
    const byte_table256 t1_low = load_byte_table256(cells.first_low), t1_high = load_byte_table256(cells.first_high);
    const byte_table256 t2_low = load_byte_table256(cells.second_low), t2_high = load_byte_table256(cells.second_high);
    const __m512i zero = _mm512_setzero_si512(), minus_one = _mm512_set1_epi16(-1);
    const __m512i natural = lane_interleave_order(); // the packs interleave 128-bit lanes
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i upper01, lower01, upper23, lower23;
        quotient_halves(x + i, scale, upper01, lower01);
        quotient_halves(x + i + 32, scale, upper23, lower23);
        const cells32 v01 = cells_of(slot_words, upper01, lower01, t.is_signed);
        const cells32 v23 = cells_of(slot_words, upper23, lower23, t.is_signed);
        const __m512i index = _mm512_packus_epi16(v01.cell, v23.cell);
        const __mmask64 upper = _mm512_movepi8_mask(index);
        const __m512i base = lookup_bytes(below, index, upper);
        const __m512i t1l = lookup_bytes(t1_low, index, upper), t1h = lookup_bytes(t1_high, index, upper);
        const __m512i t2l = lookup_bytes(t2_low, index, upper), t2h = lookup_bytes(t2_high, index, upper);
        // 16-bit lanes in the same order: values k = 0, 1 of each lane (unpacklo), then k = 2, 3 (unpackhi).
        const __m512i r_lo = v01.remainder, r_hi = v23.remainder;
        const __m512i t1_lo = _mm512_unpacklo_epi8(t1l, t1h), t1_hi = _mm512_unpackhi_epi8(t1l, t1h);
        const __m512i t2_lo = _mm512_unpacklo_epi8(t2l, t2h), t2_hi = _mm512_unpackhi_epi8(t2l, t2h);
        __m512i c_lo = _mm512_unpacklo_epi8(base, zero), c_hi = _mm512_unpackhi_epi8(base, zero);
        c_lo = _mm512_mask_sub_epi16(c_lo, _mm512_cmpgt_epu16_mask(r_lo, t1_lo), c_lo, minus_one);
        c_lo = _mm512_mask_sub_epi16(c_lo, _mm512_cmpgt_epu16_mask(r_lo, t2_lo), c_lo, minus_one);
        c_hi = _mm512_mask_sub_epi16(c_hi, _mm512_cmpgt_epu16_mask(r_hi, t1_hi), c_hi, minus_one);
        c_hi = _mm512_mask_sub_epi16(c_hi, _mm512_cmpgt_epu16_mask(r_hi, t2_hi), c_hi, minus_one);
        const __mmask32 tie = _mm512_cmpeq_epi16_mask(r_lo, t1_lo) | _mm512_cmpeq_epi16_mask(r_lo, t2_lo) |
                              _mm512_cmpeq_epi16_mask(r_hi, t1_hi) | _mm512_cmpeq_epi16_mask(r_hi, t2_hi);
        if (tie != 0) { // a remainder equals a threshold's in its top 15 bits: compare whole floats
            encode_block_avx512(t, x + i, 64, absmax, codes + i);
            continue;
        }
        _mm512_storeu_si512(codes + i, _mm512_permutexvar_epi8(natural, _mm512_packus_epi16(c_lo, c_hi)));
    }
    return i;
}
//! x[j] = values[codes[j]] * absmax for the largest multiple k of 64 not above n;
//! returns k. Each byte of the values' encodings is looked up for 64 codes at
//! once and four unpacks join them: 31 instructions per 64 values, against
//! about 100 for the float permutes of decode_block_avx512. Bit-identical: the
//! same value, the same single multiplication.
CHILDTUNE_VBMI_TARGET inline std::size_t decode_block_avx512_vbmi(const dynamic_map_cells& cells, const std::uint8_t* codes,
                                                                  std::size_t n, float absmax, float* x) {
    const byte_table256 b0 = load_byte_table256(cells.value_bytes[0]), b1 = load_byte_table256(cells.value_bytes[1]);
    const byte_table256 b2 = load_byte_table256(cells.value_bytes[2]), b3 = load_byte_table256(cells.value_bytes[3]);
    const __m512i interleave = lane_interleave_order();
    const __m512 scale = _mm512_set1_ps(absmax);
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        // Codes in the order the unpacks undo: lane L of output k holds values 16k + 4L .. 16k + 4L + 3.
        const __m512i index = _mm512_permutexvar_epi8(interleave, _mm512_loadu_si512(codes + i));
        const __mmask64 upper = _mm512_movepi8_mask(index);
        const __m512i y0 = lookup_bytes(b0, index, upper), y1 = lookup_bytes(b1, index, upper);
        const __m512i y2 = lookup_bytes(b2, index, upper), y3 = lookup_bytes(b3, index, upper);
        const __m512i low01 = _mm512_unpacklo_epi8(y0, y1), high01 = _mm512_unpackhi_epi8(y0, y1);
        const __m512i low23 = _mm512_unpacklo_epi8(y2, y3), high23 = _mm512_unpackhi_epi8(y2, y3);
        const __m512i words[4] = {_mm512_unpacklo_epi16(low01, low23), _mm512_unpackhi_epi16(low01, low23),
                                  _mm512_unpacklo_epi16(high01, high23), _mm512_unpackhi_epi16(high01, high23)};
        for (int k = 0; k < 4; ++k) _mm512_storeu_ps(x + i + 16 * k, _mm512_mul_ps(_mm512_castsi512_ps(words[k]), scale));
    }
    return i;
}
#undef CHILDTUNE_VBMI_TARGET
#undef CHILDTUNE_VBMI2_TARGET
#endif

} // namespace childtune::detail

CHILDTUNE_AVX512_WARNINGS_END
