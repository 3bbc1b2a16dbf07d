#pragma once
//! \file
//! SSE2 kernels of the radix select's histogram and gather passes for float
//! scores and for their magnitudes (magnitude masks; every x86-64 CPU has SSE2):
//! keys, prefix tests and NaN tests eight scores at a time; the counting stays
//! scalar.

#include <childtune/config.hpp>
#include <childtune/select/detail/order_keys.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_SSE2
//! Four float order keys at once (key_from_bits, lane by lane).
CHILDTUNE_ALWAYS_INLINE __m128i order_keys_sse2(__m128i u) {
    const __m128i sign = _mm_set1_epi32(std::numeric_limits<int>::min());
    u = _mm_andnot_si128(_mm_cmpeq_epi32(u, sign), u);
    return _mm_xor_si128(u, _mm_or_si128(_mm_srai_epi32(u, 31), sign));
}

//! Bit j set where lane j of the 8 keys in (k0, k1) carries `prefix` above hi.
CHILDTUNE_ALWAYS_INLINE unsigned prefix_matches_sse2(__m128i k0, __m128i k1, __m128i hi, __m128i prefix) {
    const int m0 = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_srl_epi32(k0, hi), prefix)));
    const int m1 = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_srl_epi32(k1, hi), prefix)));
    return static_cast<unsigned>(m0 | (m1 << 4));
}

//! The float bits of 4 scores, or of their magnitudes (sign bit cleared) when Abs.
template <bool Abs>
CHILDTUNE_ALWAYS_INLINE __m128i lane_bits_sse2(const float* x) {
    const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    if constexpr (Abs) return _mm_and_si128(u, _mm_set1_epi32(0x7FFFFFFF));
    else return u;
}
//! The same for one score.
template <bool Abs>
CHILDTUNE_ALWAYS_INLINE std::uint32_t lane_bits(float x) {
    const auto u = std::bit_cast<std::uint32_t>(x);
    return Abs ? u & 0x7FFFFFFFu : u;
}

//! histogram_piece for float scores (or their magnitudes when Abs), 8 keys per
//! step: the keys, the prefix test and the NaN test in vectors, the counting in
//! scalar code.
template <bool Filter, bool Abs>
void histogram_piece_sse2(const float* x, std::size_t n, std::uint32_t* lanes, int hi_shift, std::uint32_t prefix,
                          int lo_shift, std::uint32_t digit_mask, std::uint32_t& nan_seen) {
    constexpr std::size_t stride = std::size_t{1} << max_digit_bits;
    const __m128i hi = _mm_cvtsi32_si128(hi_shift), lo = _mm_cvtsi32_si128(lo_shift);
    const __m128i pre = _mm_set1_epi32(static_cast<int>(prefix));
    const __m128i magnitude = _mm_set1_epi32(0x7FFFFFFF), infinity = _mm_set1_epi32(0x7F800000);
    __m128i nan = _mm_setzero_si128();
    alignas(16) std::uint32_t d[8];
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i u0 = lane_bits_sse2<Abs>(x + i);
        const __m128i u1 = lane_bits_sse2<Abs>(x + i + 4);
        const __m128i k0 = order_keys_sse2(u0), k1 = order_keys_sse2(u1);
        if constexpr (!Filter) {
            nan = _mm_or_si128(nan, _mm_cmpgt_epi32(_mm_and_si128(u0, magnitude), infinity));
            nan = _mm_or_si128(nan, _mm_cmpgt_epi32(_mm_and_si128(u1, magnitude), infinity));
            _mm_store_si128(reinterpret_cast<__m128i*>(d), _mm_srl_epi32(k0, lo));
            _mm_store_si128(reinterpret_cast<__m128i*>(d + 4), _mm_srl_epi32(k1, lo));
            ++lanes[d[0]];
            ++lanes[stride + d[1]];
            ++lanes[2 * stride + d[2]];
            ++lanes[3 * stride + d[3]];
            ++lanes[d[4]];
            ++lanes[stride + d[5]];
            ++lanes[2 * stride + d[6]];
            ++lanes[3 * stride + d[7]];
        } else {
            unsigned hits = prefix_matches_sse2(k0, k1, hi, pre);
            if (hits != 0) {
                _mm_store_si128(reinterpret_cast<__m128i*>(d), _mm_srl_epi32(k0, lo));
                _mm_store_si128(reinterpret_cast<__m128i*>(d + 4), _mm_srl_epi32(k1, lo));
                for (; hits != 0; hits &= hits - 1) {
                    const auto j = static_cast<std::size_t>(std::countr_zero(hits));
                    ++lanes[(j & 3) * stride + (d[j] & digit_mask)];
                }
            }
        }
    }
    if (_mm_movemask_epi8(nan) != 0) nan_seen = 1;
    for (; i < n; ++i) {
        const std::uint32_t u = lane_bits<Abs>(x[i]);
        const std::uint32_t key = key_from_bits<float>(u);
        if constexpr (!Filter) {
            nan_seen |= static_cast<std::uint32_t>(is_nan_bits<float>(u));
            ++lanes[key >> lo_shift];
        } else if ((key >> hi_shift) == prefix) {
            ++lanes[(key >> lo_shift) & digit_mask];
        }
    }
}

//! gather_piece for float scores (or their magnitudes when Abs) and a prefix,
//! 8 keys per step.
template <bool Abs>
std::uint32_t* gather_piece_sse2(const float* x, std::size_t n, std::uint32_t* out, int hi_shift, std::uint32_t prefix) {
    const __m128i hi = _mm_cvtsi32_si128(hi_shift);
    const __m128i pre = _mm_set1_epi32(static_cast<int>(prefix));
    alignas(16) std::uint32_t k[8];
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i k0 = order_keys_sse2(lane_bits_sse2<Abs>(x + i));
        const __m128i k1 = order_keys_sse2(lane_bits_sse2<Abs>(x + i + 4));
        unsigned hits = prefix_matches_sse2(k0, k1, hi, pre);
        if (hits != 0) {
            _mm_store_si128(reinterpret_cast<__m128i*>(k), k0);
            _mm_store_si128(reinterpret_cast<__m128i*>(k + 4), k1);
            for (; hits != 0; hits &= hits - 1) *out++ = k[std::countr_zero(hits)];
        }
    }
    for (; i < n; ++i) {
        const std::uint32_t key = key_from_bits<float>(lane_bits<Abs>(x[i]));
        if ((key >> hi_shift) == prefix) *out++ = key;
    }
    return out;
}
#endif

} // namespace childtune::detail
