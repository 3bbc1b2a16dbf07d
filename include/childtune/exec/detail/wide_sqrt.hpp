#pragma once
//! \file
//! Square roots of 32- and 64-byte generic vectors in one instruction
//! (`vsqrtps`/`vsqrtpd` on ymm or zmm registers) for the AVX2 and AVX-512 step
//! kernels (exec/detail/simd.hpp's vsqrt).
//!
//! Generic vectors have no square root, and the SSE2 form takes 128 bits at a
//! time: four instructions per AVX-512 vector. On AMD Zen the square root and
//! the division share one unit, and AdamW's step (a square root and two
//! divisions per element) is bound by it, so the narrow form cost the AVX-512
//! step a fifth of its time. The result is IEEE's correctly rounded root in
//! every form, so the bits do not change.
//!
//! As in exec/detail/half_f16c.hpp the functions are `inline`, not
//! always-inline: compilers refuse to always-inline a function compiled for a
//! wider target into the generic helpers. The step entries (exec/dispatch.hpp)
//! are compiled for that target with `flatten` and inline them there.

#include <childtune/config.hpp>

#include <cstring>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
CHILDTUNE_AVX512_WARNINGS_BEGIN // _mm512 intrinsics under GCC 12 (config.hpp)

namespace childtune::detail {

//! out = sqrt(x) lane-wise; Vector is any 32-byte vector of float or double.
template <class Scalar, class Vector>
__attribute__((target("avx"))) inline void sqrt_avx(Vector& out, const Vector& x) {
    static_assert(sizeof(Vector) == 32);
    if constexpr (sizeof(Scalar) == 4) {
        __m256 v;
        std::memcpy(&v, &x, sizeof v);
        v = _mm256_sqrt_ps(v);
        std::memcpy(&out, &v, sizeof v);
    } else {
        __m256d v;
        std::memcpy(&v, &x, sizeof v);
        v = _mm256_sqrt_pd(v);
        std::memcpy(&out, &v, sizeof v);
    }
}

//! The same for any 64-byte vector of float or double.
template <class Scalar, class Vector>
__attribute__((target("avx512f"))) inline void sqrt_avx512(Vector& out, const Vector& x) {
    static_assert(sizeof(Vector) == 64);
    if constexpr (sizeof(Scalar) == 4) {
        __m512 v;
        std::memcpy(&v, &x, sizeof v);
        v = _mm512_sqrt_ps(v);
        std::memcpy(&out, &v, sizeof v);
    } else {
        __m512d v;
        std::memcpy(&v, &x, sizeof v);
        v = _mm512_sqrt_pd(v);
        std::memcpy(&out, &v, sizeof v);
    }
}

} // namespace childtune::detail

CHILDTUNE_AVX512_WARNINGS_END
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif // CHILDTUNE_HAS_AVX2_DISPATCH
