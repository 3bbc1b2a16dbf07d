#pragma once
//! \file
//! Scanning gradients for NaN/Inf before a step.
//!
//! A step that would write NaN into parameters cannot be undone, so the optimizer
//! checks every gradient first (the habit of mixed-precision loss scaling: skip
//! the step, lower the scale, go on). The scan reads only the exponent bits, 16
//! bytes at a time with SSE2.

#include <childtune/config.hpp>
#include <childtune/numeric/half.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune::detail {

template <class T>
struct exponent_bits;
template <>
struct exponent_bits<float> {
    using word = std::uint32_t;
    static constexpr word mask = 0x7F800000u;
};
template <>
struct exponent_bits<double> {
    using word = std::uint64_t;
    static constexpr word mask = 0x7FF0000000000000ull;
};
template <>
struct exponent_bits<bfloat16> {
    using word = std::uint16_t;
    static constexpr word mask = 0x7F80u;
};
template <>
struct exponent_bits<float16> {
    using word = std::uint16_t;
    static constexpr word mask = 0x7C00u;
};

//! True when none of the n elements is NaN or ±Inf (all exponent bits set).
template <class T>
bool all_finite(const T* data, std::size_t n) {
    using bits = exponent_bits<T>;
    using word = typename bits::word;
    static_assert(sizeof(word) == sizeof(T));
    std::size_t i = 0;
#if CHILDTUNE_HAS_SSE2
    {
        constexpr std::size_t per_vector = 16 / sizeof(T);
        // Lanes compared after masking: 16-bit lanes for 16-bit types, 32-bit lanes
        // otherwise; a double is judged by its high 32 bits (its low lane is masked
        // to 0 and compared with 1, never equal).
        __m128i keep_bits, expect;
        if constexpr (sizeof(T) == 2) {
            keep_bits = expect = _mm_set1_epi16(static_cast<short>(bits::mask));
        } else if constexpr (sizeof(T) == 4) {
            keep_bits = expect = _mm_set1_epi32(static_cast<int>(bits::mask));
        } else {
            keep_bits = _mm_set_epi32(0x7FF00000, 0, 0x7FF00000, 0);
            expect = _mm_set_epi32(0x7FF00000, 1, 0x7FF00000, 1);
        }
        __m128i bad = _mm_setzero_si128();
        for (; i + 4 * per_vector <= n; i += 4 * per_vector) {
            for (std::size_t k = 0; k < 4; ++k) {
                const __m128i x = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i + k * per_vector)), keep_bits);
                if constexpr (sizeof(T) == 2) bad = _mm_or_si128(bad, _mm_cmpeq_epi16(x, expect));
                else bad = _mm_or_si128(bad, _mm_cmpeq_epi32(x, expect));
            }
        }
        if (_mm_movemask_epi8(bad) != 0) return false;
    }
#endif
    word acc_bad = 0;
    for (; i < n; ++i) {
        word w;
        std::memcpy(&w, data + i, sizeof w);
        acc_bad |= static_cast<word>((w & bits::mask) == bits::mask);
    }
    return acc_bad == 0;
}

} // namespace childtune::detail
