#pragma once
//! \file
//! F16C conversions for the 8-lane float16 loads and stores of the AVX2 and
//! AVX-512 step kernels (exec/detail/simd.hpp).
//!
//! The generic-vector conversions (integer arithmetic, numeric/half.hpp's rule
//! lane by lane) cost about sixty instructions per eight elements each way, which
//! made float16 parameters four times slower than bfloat16 ones. F16C converts
//! eight in one instruction, with IEEE round-to-nearest-even, so for every number
//! (normal, subnormal, overflow to infinity, signed zero) the bits are those of the
//! scalar definition. NaNs are where they differ: `vcvtph2ps` quietens a
//! signalling NaN and `vcvtps2ph` keeps the payload, while the scalar definition
//! keeps every bit on widening and writes the canonical 0x7E00 (with the sign) on
//! narrowing. A vector holding a NaN therefore returns false here and the caller
//! takes the generic path: one well-predicted branch per vector, exact results.
//!
//! The functions are `inline`, not always-inline: GCC and clang refuse to
//! always-inline an F16C function into the generic helpers, which have no target
//! attribute. The step entries (exec/dispatch.hpp) are compiled for
//! `avx2,f16c` with `flatten` and inline them there. Every CPU with AVX2 has F16C;
//! the dispatch checks both (cpu_features.hpp).

#include <childtune/config.hpp>

#include <cstdint>
#include <cstring>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace childtune::detail {

//! Eight float16 patterns at `in` widened into `out` (any 32-byte float vector
//! type); false, and `out` untouched, when one of them is a NaN.
template <class FloatVector>
__attribute__((target("avx2,f16c"))) inline bool widen_float16x8_f16c(FloatVector& out, const std::uint16_t* in) {
    static_assert(sizeof(FloatVector) == 32);
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in));
    // NaN: exponent all ones and a mantissa, i.e. |h| > 0x7C00 (16-bit signed compare).
    const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi16(0x7FFF));
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(magnitude, _mm_set1_epi16(0x7C00))) != 0) return false;
    const __m256 f = _mm256_cvtph_ps(h);
    std::memcpy(&out, &f, sizeof out);
    return true;
}

//! Eight floats narrowed to float16 patterns at `out`, rounding to nearest even;
//! false, and nothing written, when one of them is a NaN.
template <class FloatVector>
__attribute__((target("avx2,f16c"))) inline bool narrow_float16x8_f16c(std::uint16_t* out, const FloatVector& x) {
    static_assert(sizeof(FloatVector) == 32);
    __m256 f;
    std::memcpy(&f, &x, sizeof f);
    if (_mm256_movemask_ps(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)) != 0) return false;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
    return true;
}

} // namespace childtune::detail

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif // CHILDTUNE_HAS_AVX2_DISPATCH
