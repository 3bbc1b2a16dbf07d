#pragma once
//! \file
//! Blockwise 8-bit quantisation of optimizer state (Dettmers, Lewis, Shleifer &
//! Zettlemoyer, 2022, "8-bit Optimizers via Block-wise Quantization"): a block
//! of `blockwise8_block` values is stored as one float scale (the block's
//! absolute maximum) and one byte per value, the index of the nearest entry of
//! a 256-entry *dynamic* (tree) map applied to value / absmax.
//!
//! The dynamic map (the paper's section 2.2, bitsandbytes' `create_dynamic_map`
//! with 7 exponent bits): for decade i = 0..6 (scale 10^(i-6)) it holds the
//! midpoints of `linspace(0.1, 1, k + 1)` times the scale, k = 2^i for the
//! signed map (both signs) and k = 2^(i+1) for the unsigned map, plus 0 and 1;
//! 256 values, sorted. Small magnitudes get relative precision, which is what
//! Adam's second moment (spanning many decades) needs. Values are computed in
//! double and rounded once to float.
//!
//! Nearest code: the largest entry `lo` not above x and the next one compete;
//! the farther one loses, an exact tie goes to `lo`. Equivalently, the code is
//! the number of midpoints between neighbouring entries that lie strictly below
//! x (a tie, x on a midpoint, is not below it). The encoder compares x with
//! float thresholds: each midpoint, computed exactly in double, rounded down to
//! a float, since for a float x "x > midpoint" is "x > that float". A table
//! indexed by the upper 16 bits of x's float encoding gives the number of
//! thresholds below x's bucket, and two comparisons finish it, since no bucket
//! holds more than two thresholds (the published maps hold at most one per
//! bucket, and none in the two buckets that span several upper halves: checked
//! when the map is built). A NaN (a state that overflowed) encodes as code 255.
//! The vector encoders (numeric/detail/blockwise8_avx2.hpp, _avx512.hpp) read
//! one 32-bit word per bucket instead: the count below it in the upper half and,
//! in the lower half, the lower 16 bits of the one threshold inside it: within
//! a bucket all floats share their upper 16 bits, so "threshold < x" is a
//! comparison of the lower halves (reversed for negative x). One gather per
//! value instead of three; the codes are the scalar encoder's, which stays the
//! definition (tests/numeric/blockwise8.cpp compares them). CPUs with AVX-512
//! VBMI use a gather-free encoder instead (numeric/detail/blockwise8_vbmi.hpp:
//! byte-table lookups on coarser cells), with the same codes.
//! A block whose absmax is 0 stores the code of 0 and decodes to +0.
//!
//! One departure from nearest, for the unsigned map only: a positive value
//! whose nearest code is 0 gets the smallest positive code. The unsigned map
//! stores second moments v, and a v rounded to 0 under a first moment m that
//! the signed map still resolves (its smallest code is 2.75e-7 of the block's
//! absmax, the unsigned map's 1.6e-7 of v's, i.e. 4e-4 of the gradient scale)
//! would turn Adam's m / (sqrt(v) + eps) into m / eps, a step of many orders
//! of magnitude (seen on a noisy quadratic within the first step). Rounded up,
//! sqrt(v) never shrinks below the smallest code, and the step stays bounded.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/numeric/detail/blockwise8_avx2.hpp>
#include <childtune/numeric/detail/blockwise8_avx512.hpp>
#include <childtune/numeric/detail/blockwise8_vbmi.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune::detail {

//! Values per quantisation block (one float scale each): 256, so a 4-byte scale
//! adds 1/64 byte per value and a block is four of the kernels' 64-element words.
inline constexpr std::size_t blockwise8_block = 256;

//! Blocks of a quantised state buffer for a tensor (view) of n elements.
inline std::size_t blockwise8_blocks(std::size_t n) { return (n + blockwise8_block - 1) / blockwise8_block; }
//! Where the scales start in a buffer of `codes` codes (4-byte aligned).
inline std::size_t blockwise8_scales_offset(std::size_t codes) { return (codes + 3) / 4 * 4; }
//! Bytes of a quantised state buffer holding `codes` codes for a tensor of n elements.
inline std::size_t blockwise8_buffer_bytes(std::size_t codes, std::size_t n) {
    return blockwise8_scales_offset(codes) + 4 * blockwise8_blocks(n);
}

//! The sorted 256 values of the dynamic map, signed or unsigned.
inline std::array<float, 256> dynamic_map_values(bool is_signed) {
    static constexpr double decade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
    std::vector<double> data;
    for (int i = 0; i < 7; ++i) {
        const int k = is_signed ? 1 << i : 2 << i;
        for (int j = 0; j < k; ++j) {
            const double lo = 0.1 + 0.9 * j / k, hi = 0.1 + 0.9 * (j + 1) / k;
            const double mean = (lo + hi) / 2.0;
            data.push_back(decade[i] * mean);
            if (is_signed) data.push_back(-decade[i] * mean);
        }
    }
    data.push_back(0.0);
    data.push_back(1.0);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    for (std::size_t c = 0; c < 256; ++c) out[c] = static_cast<float>(data[c]);
    return out;
}

//! A dynamic map with its encoder's lookup table.
class dynamic_map {
public:
    //! The signed map (first moments, momentum) or the unsigned one (second moments).
    explicit dynamic_map(bool is_signed) : values_(dynamic_map_values(is_signed)), signed_(is_signed) {
        zero_ = static_cast<std::uint8_t>(std::find(values_.begin(), values_.end(), 0.0f) - values_.begin());
        for (std::size_t c = 0; c + 1 < 256; ++c) {
            const double mid = (static_cast<double>(values_[c]) + static_cast<double>(values_[c + 1])) / 2.0; // exact
            float t = static_cast<float>(mid);
            if (static_cast<double>(t) > mid) t = std::nextafter(t, -std::numeric_limits<float>::infinity());
            thresholds_[c] = t;
        }
        thresholds_[255] = thresholds_[256] = std::numeric_limits<float>::infinity();
        if (!std::is_sorted(thresholds_.begin(), thresholds_.end()))
            fail("dynamic map: thresholds out of order"); // cannot happen for the published maps
        for (std::size_t m = 0; m < buckets; ++m) {
            // Bucket m holds magnitudes [a, b): x in [a, b), or in (-b, -a] for a negative x.
            const float a = m == 0 ? 0.0f : std::bit_cast<float>(static_cast<std::uint32_t>((first_key + m - 1) << 16));
            const float b = std::bit_cast<float>(static_cast<std::uint32_t>((first_key + m) << 16));
            base_[m] = count_below(a);
            base_[buckets + m] = count_not_above(-b);
            // Thresholds inside the bucket: in [a, b) for x >= 0, in (-b, -a) for x < 0.
            const unsigned inside[2] = {static_cast<unsigned>(count_below(b) - base_[m]),
                                        static_cast<unsigned>(count_below(-a) - base_[buckets + m])};
            const bool spans_keys = m == 0 || m == buckets - 1; // more than one upper half: no low-half comparison
            for (std::size_t side = 0; side < 2; ++side) {
                if (inside[side] > (spans_keys ? 0u : 1u))
                    fail("dynamic map: a lookup bucket holds two thresholds"); // cannot happen for the published maps
                const std::size_t at = side * buckets + m;
                std::uint32_t low = 0xffffu; // no threshold: "x's lower half above 0xffff" never holds
                if (inside[side] == 1) {
                    const std::uint32_t bits = std::bit_cast<std::uint32_t>(thresholds_[base_[at]]) & 0xffffu;
                    low = side == 0 ? bits : bits ^ 0xffffu; // a negative x is above it when its magnitude is below
                }
                bucket_words_[at] = static_cast<std::uint32_t>(base_[at]) << 16 | low;
            }
        }
        cells_ = make_dynamic_map_cells(values_.data(), thresholds_.data(), signed_);
    }

    //! The 256 values, ascending.
    const std::array<float, 256>& values() const { return values_; }
    //! The code of 0.
    std::uint8_t zero_code() const { return zero_; }
    //! The encoder's thresholds: each midpoint rounded down to a float, then two +inf.
    const std::array<float, 257>& thresholds() const { return thresholds_; }
    //! The tables the vector encoders and decoders read (numeric/detail/blockwise8_avx2.hpp, _avx512.hpp, _vbmi.hpp).
    dynamic_map_tables tables() const {
        return {bucket_words_.data(), values_.data(), first_key, static_cast<std::uint32_t>(buckets), signed_, &cells_};
    }

    //! The nearest code of x in [-1, 1] (the file comment gives the rule).
    //! Branch-free: the comparisons are added as integers, since a data-dependent
    //! branch here mispredicts about half the time.
    std::uint8_t encode(float x) const {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
        const std::uint32_t key = (u >> 16) & 0x7fffu;
        const std::size_t m = key < first_key ? 0 : std::min<std::size_t>(key - first_key + 1, buckets - 1);
        const std::size_t base = base_[(u >> 31) * buckets + m];
        std::size_t code = base + static_cast<std::size_t>(thresholds_[base] < x) + static_cast<std::size_t>(thresholds_[base + 1] < x);
        code += static_cast<std::size_t>(!signed_ & (code == 0) & (x > 0.0f)); // a positive v never becomes 0
        return x != x ? std::uint8_t{255} : static_cast<std::uint8_t>(code);
    }

private:
    // Magnitudes below 2^-24 share bucket 0; then one bucket per upper 16 bits
    // of the float up to 1.0 (1/128 of an octave each).
    static constexpr std::uint32_t first_key = (127u - 24u) << 7;
    static constexpr std::size_t buckets = ((127u << 7) - first_key) + 2;

    //! Thresholds below x; at or below x.
    std::uint16_t count_below(float x) const {
        return static_cast<std::uint16_t>(std::lower_bound(thresholds_.begin(), thresholds_.begin() + 255, x) - thresholds_.begin());
    }
    std::uint16_t count_not_above(float x) const {
        return static_cast<std::uint16_t>(std::upper_bound(thresholds_.begin(), thresholds_.begin() + 255, x) - thresholds_.begin());
    }

    std::array<float, 256> values_;
    //! Midpoints between neighbouring values rounded down to floats, then two +inf.
    std::array<float, 257> thresholds_{};
    std::uint8_t zero_ = 0;
    bool signed_ = true;
    //! Thresholds below each bucket: positive magnitudes, then negative ones.
    std::array<std::uint16_t, 2 * buckets> base_{};
    //! The vector encoders' words, in the same order: base_ << 16 | the lower
    //! half of the bucket's one threshold (complemented for negative x), or 0xffff.
    std::array<std::uint32_t, 2 * buckets> bucket_words_{};
    //! The VBMI loops' tables: the encoder's cells, the decoder's value bytes (numeric/detail/blockwise8_vbmi.hpp).
    dynamic_map_cells cells_{};
};

//! The signed dynamic map, built once.
inline const dynamic_map& signed_dynamic_map() {
    static const dynamic_map m(true);
    return m;
}
//! The unsigned dynamic map, built once.
inline const dynamic_map& unsigned_dynamic_map() {
    static const dynamic_map m(false);
    return m;
}

//! The largest |x[i]|, NaNs not counted (0 when there is none). Several
//! running maxima instead of one (AVX-512: four of 16 lanes, AVX2: four of 8,
//! then SSE2: two of 4, then the plain loop for the rest): a single chain of
//! max instructions costs their latency per element. max(m, v) = (m < v ? v : m)
//! keeps m for a NaN v in every form (maxps(v, m) is `v > m ? v : m`), and the
//! maximum of a set does not depend on the order it is taken in, so the result
//! is the plain loop's.
inline float block_absmax(const float* x, std::size_t n) {
    std::size_t i = 0;
    float absmax = 0.0f;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const cpu_isa isa = best_cpu_isa();
    if (isa >= cpu_isa::avx512) i = absmax_avx512(x, n, absmax);
    else if (isa >= cpu_isa::avx2) i = absmax_avx2(x, n, absmax);
#endif
#if CHILDTUNE_HAS_SSE2
    if (i + 8 <= n) {
        const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
        __m128 m0 = _mm_set1_ps(absmax), m1 = m0;
        for (; i + 8 <= n; i += 8) {
            m0 = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + i), magnitude), m0);
            m1 = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + i + 4), magnitude), m1);
        }
        const __m128 m = _mm_max_ps(m0, m1), half = _mm_max_ps(m, _mm_movehl_ps(m, m));
        absmax = _mm_cvtss_f32(_mm_max_ss(half, _mm_shuffle_ps(half, half, 1)));
    }
#endif
    for (; i < n; ++i) absmax = std::max(absmax, std::fabs(x[i]));
    return absmax;
}

//! The widest vector encoder this CPU has: codes of x[0 .. k) / absmax for a
//! k <= n it returns (a multiple of the vector width; 0 without AVX2).
inline std::size_t encode_block_vector(const dynamic_map_tables& t, const float* x, std::size_t n, float absmax,
                                       std::uint8_t* codes) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const cpu_isa isa = best_cpu_isa();
    if (isa >= cpu_isa::avx512 && t.cells != nullptr && cpu_has_avx512vbmi2()) {
        const std::size_t k = encode_block_avx512_vbmi(t, x, n, absmax, codes);
        return k == n ? k : k + encode_block_avx512(t, x + k, n - k, absmax, codes + k);
    }
    if (isa >= cpu_isa::avx512) return encode_block_avx512(t, x, n, absmax, codes);
    if (isa >= cpu_isa::avx2) return encode_block_avx2(t, x, n, absmax, codes);
#endif
    (void)t, (void)x, (void)n, (void)absmax, (void)codes;
    return 0;
}
//! The widest vector decoder this CPU has: x[0 .. k) for a k <= n it returns.
inline std::size_t decode_block_vector(const dynamic_map_tables& t, const std::uint8_t* codes, std::size_t n,
                                       float absmax, float* x) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const cpu_isa isa = best_cpu_isa();
    if (isa >= cpu_isa::avx512 && t.cells != nullptr && cpu_has_avx512vbmi()) {
        const std::size_t k = decode_block_avx512_vbmi(*t.cells, codes, n, absmax, x);
        return k == n ? k : k + decode_block_avx512(t, codes + k, n - k, absmax, x + k);
    }
    if (isa >= cpu_isa::avx512) return decode_block_avx512(t, codes, n, absmax, x);
    if (isa >= cpu_isa::avx2) return decode_block_avx2(t, codes, n, absmax, x);
#endif
    (void)t, (void)codes, (void)n, (void)absmax, (void)x;
    return 0;
}

//! Quantises n values (one block) into codes, returning the block's scale (its
//! absolute maximum; NaN values do not count). Each code is map.encode(x / absmax);
//! the vector loops divide and encode 16 (AVX-512) or 8 (AVX2) values at a time.
inline float quantise_block(const dynamic_map& map, const float* x, std::size_t n, std::uint8_t* codes) {
    const float absmax = block_absmax(x, n);
    if (absmax == 0.0f) {
        std::fill_n(codes, n, map.zero_code());
        return 0.0f;
    }
    for (std::size_t i = encode_block_vector(map.tables(), x, n, absmax, codes); i < n; ++i)
        codes[i] = map.encode(x[i] / absmax);
    return absmax;
}

//! The inverse of quantise_block, up to the map's resolution: values[code] * absmax.
inline void dequantise_block(const dynamic_map& map, const std::uint8_t* codes, std::size_t n, float absmax, float* x) {
    if (absmax == 0.0f) {
        std::fill_n(x, n, 0.0f);
        return;
    }
    for (std::size_t i = decode_block_vector(map.tables(), codes, n, absmax, x); i < n; ++i)
        x[i] = map.values()[codes[i]] * absmax;
}

} // namespace childtune::detail
