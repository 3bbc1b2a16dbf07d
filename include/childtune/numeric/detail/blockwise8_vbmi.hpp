#pragma once
//! \file
//! The AVX-512 encoder of the 8-bit blockwise state (numeric/blockwise8.hpp)
//! for CPUs with VBMI (Ice Lake and later, AMD Zen 4 and later): sixty-four
//! values at a time, and no gather. On AMD Zen a sixteen-lane gather costs
//! about two cycles per lane, which made the bucket gather of
//! blockwise8_avx512.hpp most of the 8-bit step; VBMI's byte permute looks up
//! 64 lanes of a 128-entry table in one instruction.
//!
//! The idea: cut each octave of magnitudes into 2^j equal *cells*, j chosen per
//! octave so that no cell holds more than two of the map's thresholds (coarse
//! where the map is sparse), at most 128 cells per sign (256 for the unsigned
//! map, which has one sign). A value's cell is its octave's first cell plus
//! the top j bits of its mantissa. Per cell, byte tables hold the number of
//! thresholds below the cell and the top 15 bits of the mantissa remainder
//! (the bits below the cell's j) of each threshold inside it, or 0xFFFF for
//! none. Within a cell every float shares the bits above the remainder, so
//! "threshold < x" is a comparison of remainders (reversed, by complementing
//! both, for negative x): code = below + [x's 15 bits > t1's] + [x's > t2's].
//! When x's top 15 bits equal a threshold's, the lower bits would decide; the
//! group of 64 is then encoded again by the gather encoder, which compares
//! whole floats (a lane hits this with a probability of about 2^-14, a group
//! in about 0.5 % of cases on random data). So the codes are the scalar
//! encoder's bit for bit, and tests/numeric/blockwise8.cpp compares them.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/numeric/detail/blockwise8_avx2.hpp>
#include <childtune/numeric/detail/blockwise8_avx512.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace childtune::detail {

//! The cell tables of one dynamic map (the file comment gives the scheme).
//! Octave slot s = clamp(biased exponent - 96, 0, 31): slot 0 holds every
//! magnitude below 2^-30 (no threshold lies there), slot 31 the magnitude 1.
struct dynamic_map_cells {
    alignas(64) std::uint32_t first_cell[32]; //!< the slot's first cell (positive side)
    alignas(64) std::uint32_t cell_shift[32]; //!< 23 - j: the mantissa bits below the cell's prefix
    alignas(64) std::uint32_t drop[32];       //!< max(cell_shift - 15, 0): remainder bits not compared
    alignas(64) std::uint8_t below[256];      //!< thresholds below the cell (negative side from 128)
    //! Low and high bytes of the two thresholds' 15-bit remainders (complemented
    //! on the negative side), 0xFFFF where the cell holds fewer.
    alignas(64) std::uint8_t first_low[256], first_high[256], second_low[256], second_high[256];
};

//! Cell tables for the 255 ascending `thresholds` of a map; `is_signed`: both
//! signs (128 cells each) or positive values only (256 cells).
inline dynamic_map_cells make_dynamic_map_cells(const float* thresholds, bool is_signed) {
    const auto below = [&](float x) { // thresholds < x
        return static_cast<std::uint32_t>(std::lower_bound(thresholds, thresholds + 255, x) - thresholds);
    };
    const auto not_above = [&](float x) { // thresholds <= x
        return static_cast<std::uint32_t>(std::upper_bound(thresholds, thresholds + 255, x) - thresholds);
    };
    const auto magnitude = [](std::uint32_t bits) { return std::bit_cast<float>(bits); };
    // Slot s covers the magnitude bits [slot_begin(s), slot_begin(s + 1)).
    const auto slot_begin = [](std::uint32_t s) { return s == 0 ? 0u : (96u + s) << 23; };
    const std::uint32_t sides = is_signed ? 2 : 1, side_cells = is_signed ? 128 : 256;
    // Thresholds inside the cell of magnitude bits [a, b): in [a, b) for x >= 0, in (-b, -a) for x < 0.
    const auto inside = [&](std::uint32_t side, std::uint32_t a, std::uint32_t b) {
        return side == 0 ? below(magnitude(b)) - below(magnitude(a)) : below(-magnitude(a)) - not_above(-magnitude(b));
    };
    dynamic_map_cells c{};
    std::fill(std::begin(c.first_low), std::end(c.first_low), 0xFF);
    std::fill(std::begin(c.first_high), std::end(c.first_high), 0xFF);
    std::fill(std::begin(c.second_low), std::end(c.second_low), 0xFF);
    std::fill(std::begin(c.second_high), std::end(c.second_high), 0xFF);
    std::uint32_t next = 0;
    for (std::uint32_t s = 0; s < 32; ++s) {
        const std::uint32_t begin = slot_begin(s), end = s == 31 ? 128u << 23 : slot_begin(s + 1);
        // The fewest prefix bits j that leave at most two thresholds in each cell
        // (slot 0 spans many octaves: one cell, which must hold none).
        const auto fits = [&](std::uint32_t j) {
            const std::uint32_t width = (end - begin) >> j;
            for (std::uint32_t side = 0; side < sides; ++side)
                for (std::uint32_t k = 0; k < (1u << j); ++k)
                    if (inside(side, begin + k * width, begin + (k + 1) * width) > (s == 0 ? 0u : 2u)) return false;
            return true;
        };
        std::uint32_t j = 0;
        while (!fits(j))
            if (++j > 8 || s == 0) fail("dynamic map: no encoder cells for the octave of 2^" + std::to_string(int(s) - 31));
        const std::uint32_t shift = s == 0 ? 23 : 23 - j, width = (end - begin) >> j;
        c.first_cell[s] = next;
        c.cell_shift[s] = shift;
        c.drop[s] = shift > 15 ? shift - 15 : 0;
        for (std::uint32_t k = 0; k < (1u << j); ++k, ++next) {
            if (next >= side_cells) fail("dynamic map: more than " + std::to_string(side_cells) + " encoder cells");
            const std::uint32_t a = begin + k * width, b = a + width;
            for (std::uint32_t side = 0; side < sides; ++side) {
                const std::uint32_t cell = side * 128 + next;
                const std::uint32_t first = side == 0 ? below(magnitude(a)) : not_above(-magnitude(b));
                c.below[cell] = static_cast<std::uint8_t>(first);
                for (std::uint32_t t = 0; t < inside(side, a, b); ++t) {
                    const std::uint32_t bits = std::bit_cast<std::uint32_t>(thresholds[first + t]) & 0x7fffffffu;
                    std::uint32_t remainder = (bits & ((1u << shift) - 1)) >> c.drop[s];
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

//! A 256-entry byte table in four registers.
struct byte_table256 {
    __m512i part[4]; //!< entries [64p, 64p + 64) in part[p]
};
CHILDTUNE_VBMI_TARGET inline byte_table256 load_byte_table256(const std::uint8_t* t) {
    return {{_mm512_loadu_si512(t), _mm512_loadu_si512(t + 64), _mm512_loadu_si512(t + 128), _mm512_loadu_si512(t + 192)}};
}
//! Sixty-four lookups: two two-register byte permutes, then bit 7 of the index picks.
CHILDTUNE_VBMI_TARGET CHILDTUNE_ALWAYS_INLINE __m512i lookup_bytes(const byte_table256& t, __m512i index, __mmask64 upper) {
    return _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.part[0], index, t.part[1]),
                                  _mm512_permutex2var_epi8(t.part[2], index, t.part[3]));
}

//! Sixteen values' cells and 15-bit remainders (complemented for negative x).
struct cells16 {
    __m512 ratio;      //!< x / absmax
    __m512i cell;      //!< cell index, 0 .. 255
    __m512i remainder; //!< 0 .. 0x7fff
};

//! The per-octave tables in registers.
struct octave_tables {
    __m512i first[2], shift[2], drop[2]; //!< dynamic_map_cells' first_cell, cell_shift, drop
};

//! Cells and remainders of x[0 .. 16) / scale (the file comment gives the scheme).
CHILDTUNE_VBMI_TARGET CHILDTUNE_ALWAYS_INLINE cells16 cells_of(const octave_tables& o, const float* x, __m512 scale,
                                                               bool is_signed) {
    cells16 r;
    r.ratio = _mm512_div_ps(_mm512_loadu_ps(x), scale);
    const __m512i u = _mm512_castps_si512(r.ratio);
    const __m512i exponent = _mm512_srli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), 23);
    const __m512i slot = _mm512_min_epi32(_mm512_max_epi32(_mm512_sub_epi32(exponent, _mm512_set1_epi32(96)),
                                                           _mm512_setzero_si512()),
                                          _mm512_set1_epi32(31));
    const __m512i shift = _mm512_permutex2var_epi32(o.shift[0], slot, o.shift[1]);
    const __m512i mantissa = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffff));
    const __m512i local = _mm512_srlv_epi32(mantissa, shift);
    r.cell = _mm512_add_epi32(_mm512_permutex2var_epi32(o.first[0], slot, o.first[1]), local);
    r.remainder = _mm512_srlv_epi32(_mm512_sub_epi32(mantissa, _mm512_sllv_epi32(local, shift)),
                                    _mm512_permutex2var_epi32(o.drop[0], slot, o.drop[1]));
    if (is_signed) {
        const __mmask16 negative = _mm512_movepi32_mask(u);
        r.cell = _mm512_mask_add_epi32(r.cell, negative, r.cell, _mm512_set1_epi32(128));
        r.remainder = _mm512_mask_xor_epi32(r.remainder, negative, r.remainder, _mm512_set1_epi32(0x7fff));
    }
    return r;
}

//! 32 lanes of 16 bits from two vectors of 16 values.
CHILDTUNE_VBMI_TARGET CHILDTUNE_ALWAYS_INLINE __m512i narrow16(__m512i a, __m512i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(a)), _mm512_cvtepi32_epi16(b), 1);
}
//! One mask of 32 lanes from two of 16.
inline __mmask32 lanes32(__mmask16 low, __mmask16 high) {
    return static_cast<__mmask32>(static_cast<std::uint32_t>(high) << 16 | low);
}

//! Codes of x[0 .. k) / absmax for the largest multiple k of 64 not above n;
//! returns k. `cells` belongs to the map `t` describes.
CHILDTUNE_VBMI_TARGET inline std::size_t encode_block_avx512_vbmi(const dynamic_map_tables& t, const dynamic_map_cells& cells,
                                                                  const float* x, std::size_t n, float absmax, std::uint8_t* codes) {
    const __m512 scale = _mm512_set1_ps(absmax);
    const octave_tables octaves = {{_mm512_load_si512(cells.first_cell), _mm512_load_si512(cells.first_cell + 16)},
                                   {_mm512_load_si512(cells.cell_shift), _mm512_load_si512(cells.cell_shift + 16)},
                                   {_mm512_load_si512(cells.drop), _mm512_load_si512(cells.drop + 16)}};
    const byte_table256 below = load_byte_table256(cells.below);
    const byte_table256 t1_low = load_byte_table256(cells.first_low), t1_high = load_byte_table256(cells.first_high);
    const byte_table256 t2_low = load_byte_table256(cells.second_low), t2_high = load_byte_table256(cells.second_high);
    const __m512i zero = _mm512_setzero_si512(), minus_one = _mm512_set1_epi16(-1);
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const cells16 v[4] = {cells_of(octaves, x + i, scale, t.is_signed), cells_of(octaves, x + i + 16, scale, t.is_signed),
                              cells_of(octaves, x + i + 32, scale, t.is_signed), cells_of(octaves, x + i + 48, scale, t.is_signed)};
        // The cell bytes in the order unpack{lo,hi}_epi8 undoes: 128-bit lane L holds
        // values 8L .. 8L + 7, then 32 + 8L .. 32 + 8L + 7.
        const __m128i b0 = _mm512_cvtepi32_epi8(v[0].cell), b1 = _mm512_cvtepi32_epi8(v[1].cell);
        const __m128i b2 = _mm512_cvtepi32_epi8(v[2].cell), b3 = _mm512_cvtepi32_epi8(v[3].cell);
        __m512i index = _mm512_castsi128_si512(_mm_unpacklo_epi64(b0, b2));
        index = _mm512_inserti32x4(index, _mm_unpackhi_epi64(b0, b2), 1);
        index = _mm512_inserti32x4(index, _mm_unpacklo_epi64(b1, b3), 2);
        index = _mm512_inserti32x4(index, _mm_unpackhi_epi64(b1, b3), 3);
        const __mmask64 upper = _mm512_movepi8_mask(index);
        const __m512i base = lookup_bytes(below, index, upper);
        const __m512i t1l = lookup_bytes(t1_low, index, upper), t1h = lookup_bytes(t1_high, index, upper);
        const __m512i t2l = lookup_bytes(t2_low, index, upper), t2h = lookup_bytes(t2_high, index, upper);
        std::uint64_t tie = 0;
        __m512i code[2];
        for (int h = 0; h < 2; ++h) { // values 32h .. 32h + 31
            const __m512i r = narrow16(v[2 * h].remainder, v[2 * h + 1].remainder);
            const __m512i t1 = h == 0 ? _mm512_unpacklo_epi8(t1l, t1h) : _mm512_unpackhi_epi8(t1l, t1h);
            const __m512i t2 = h == 0 ? _mm512_unpacklo_epi8(t2l, t2h) : _mm512_unpackhi_epi8(t2l, t2h);
            __m512i c = h == 0 ? _mm512_unpacklo_epi8(base, zero) : _mm512_unpackhi_epi8(base, zero);
            c = _mm512_mask_sub_epi16(c, _mm512_cmpgt_epu16_mask(r, t1), c, minus_one);
            c = _mm512_mask_sub_epi16(c, _mm512_cmpgt_epu16_mask(r, t2), c, minus_one);
            tie |= _mm512_cmpeq_epi16_mask(r, t1) | _mm512_cmpeq_epi16_mask(r, t2);
            const cells16& a = v[2 * h];
            const cells16& b = v[2 * h + 1];
            if (!t.is_signed) { // negative: code 0; a positive v never becomes 0
                c = _mm512_maskz_mov_epi16(~lanes32(_mm512_movepi32_mask(_mm512_castps_si512(a.ratio)),
                                                    _mm512_movepi32_mask(_mm512_castps_si512(b.ratio))), c);
                const __mmask32 positive = lanes32(_mm512_cmp_ps_mask(a.ratio, _mm512_setzero_ps(), _CMP_GT_OQ),
                                                   _mm512_cmp_ps_mask(b.ratio, _mm512_setzero_ps(), _CMP_GT_OQ));
                c = _mm512_mask_mov_epi16(c, positive & _mm512_cmpeq_epi16_mask(c, zero), _mm512_set1_epi16(1));
            }
            const __mmask32 nan = lanes32(_mm512_cmp_ps_mask(a.ratio, a.ratio, _CMP_UNORD_Q),
                                          _mm512_cmp_ps_mask(b.ratio, b.ratio, _CMP_UNORD_Q));
            code[h] = _mm512_mask_mov_epi16(c, nan, _mm512_set1_epi16(255));
        }
        if (tie != 0) { // a remainder equals a threshold's in its top 15 bits: compare whole floats
            encode_block_avx512(t, x + i, 64, absmax, codes + i);
            continue;
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), _mm512_cvtepi16_epi8(code[0]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i + 32), _mm512_cvtepi16_epi8(code[1]));
    }
    return i;
}
#undef CHILDTUNE_VBMI_TARGET
#endif

} // namespace childtune::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
