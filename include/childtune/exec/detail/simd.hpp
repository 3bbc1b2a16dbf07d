#pragma once
//! \file
//! The small vector vocabulary the CPU step is written in.
//!
//! Update rules are templates over a value type V and a lane-mask type K: with
//! V = float/double and K = bool they are the scalar definition (also the code a
//! CUDA or Thrust kernel runs); with the SSE2 types below the same source text runs
//! 4 floats or 2 doubles at a time. SSE2 is part of every x86-64 target, so the
//! hot loop is vectorised under the users' ordinary flags (plain -O2, no -march,
//! no fast-math) — the compiler's auto-vectoriser would give up on `std::sqrt`,
//! which must set errno (DESIGN.md §4). Each operation is one IEEE-754 operation
//! in both forms, so the vector and scalar paths give identical bits.

#include <childtune/config.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/lanes.hpp>

#include <cmath>
#include <cstdint>
#include <type_traits>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_SSE2
// ---- SSE2 forms ------------------------------------------------------------------
struct f32x4 {
    __m128 v;
    static constexpr int lanes = 4;
    using scalar = float;
    f32x4() = default;
    CHILDTUNE_ALWAYS_INLINE f32x4(__m128 x) : v(x) {}
    CHILDTUNE_ALWAYS_INLINE f32x4(float x) : v(_mm_set1_ps(x)) {}
};
struct m32x4 {
    __m128 v;
};
CHILDTUNE_ALWAYS_INLINE f32x4 operator+(f32x4 a, f32x4 b) { return _mm_add_ps(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f32x4 operator-(f32x4 a, f32x4 b) { return _mm_sub_ps(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f32x4 operator*(f32x4 a, f32x4 b) { return _mm_mul_ps(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f32x4 operator/(f32x4 a, f32x4 b) { return _mm_div_ps(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f32x4 vsqrt(f32x4 a) { return _mm_sqrt_ps(a.v); }
CHILDTUNE_ALWAYS_INLINE f32x4 select(m32x4 k, f32x4 a, f32x4 b) {
    return _mm_or_ps(_mm_and_ps(k.v, a.v), _mm_andnot_ps(k.v, b.v));
}
CHILDTUNE_ALWAYS_INLINE m32x4 mask_or(m32x4 a, m32x4 b) { return {_mm_or_ps(a.v, b.v)}; }

struct f64x2 {
    __m128d v;
    static constexpr int lanes = 2;
    using scalar = double;
    f64x2() = default;
    CHILDTUNE_ALWAYS_INLINE f64x2(__m128d x) : v(x) {}
    CHILDTUNE_ALWAYS_INLINE f64x2(double x) : v(_mm_set1_pd(x)) {}
};
struct m64x2 {
    __m128d v;
};
CHILDTUNE_ALWAYS_INLINE f64x2 operator+(f64x2 a, f64x2 b) { return _mm_add_pd(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 operator-(f64x2 a, f64x2 b) { return _mm_sub_pd(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 operator*(f64x2 a, f64x2 b) { return _mm_mul_pd(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 operator/(f64x2 a, f64x2 b) { return _mm_div_pd(a.v, b.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 vsqrt(f64x2 a) { return _mm_sqrt_pd(a.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 select(m64x2 k, f64x2 a, f64x2 b) {
    return _mm_or_pd(_mm_and_pd(k.v, a.v), _mm_andnot_pd(k.v, b.v));
}
CHILDTUNE_ALWAYS_INLINE m64x2 mask_or(m64x2 a, m64x2 b) { return {_mm_or_pd(a.v, b.v)}; }

//! Lane masks from the low bits of a keep word (bit j: lane j kept).
alignas(16) inline constexpr std::uint32_t mask4_table[16][4] = {
    {0, 0, 0, 0}, {~0u, 0, 0, 0}, {0, ~0u, 0, 0}, {~0u, ~0u, 0, 0},
    {0, 0, ~0u, 0}, {~0u, 0, ~0u, 0}, {0, ~0u, ~0u, 0}, {~0u, ~0u, ~0u, 0},
    {0, 0, 0, ~0u}, {~0u, 0, 0, ~0u}, {0, ~0u, 0, ~0u}, {~0u, ~0u, 0, ~0u},
    {0, 0, ~0u, ~0u}, {~0u, 0, ~0u, ~0u}, {0, ~0u, ~0u, ~0u}, {~0u, ~0u, ~0u, ~0u}};
alignas(16) inline constexpr std::uint64_t mask2_table[4][2] = {{0, 0}, {~0ull, 0}, {0, ~0ull}, {~0ull, ~0ull}};

CHILDTUNE_ALWAYS_INLINE m32x4 lane_mask(f32x4*, std::uint64_t bits) {
    return {_mm_load_ps(reinterpret_cast<const float*>(mask4_table[bits & 15]))};
}
CHILDTUNE_ALWAYS_INLINE m64x2 lane_mask(f64x2*, std::uint64_t bits) {
    return {_mm_load_pd(reinterpret_cast<const double*>(mask2_table[bits & 3]))};
}

// Loads widen the stored element type to the state type; stores round back.
CHILDTUNE_ALWAYS_INLINE f32x4 load(f32x4*, const float* p) { return _mm_loadu_ps(p); }
CHILDTUNE_ALWAYS_INLINE void store(float* p, f32x4 x) { _mm_storeu_ps(p, x.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 load(f64x2*, const double* p) { return _mm_loadu_pd(p); }
CHILDTUNE_ALWAYS_INLINE void store(double* p, f64x2 x) { _mm_storeu_pd(p, x.v); }
CHILDTUNE_ALWAYS_INLINE f64x2 load(f64x2*, const float* p) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
CHILDTUNE_ALWAYS_INLINE void store(float* p, f64x2 x) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_castps_si128(_mm_cvtpd_ps(x.v)));
}
CHILDTUNE_ALWAYS_INLINE f32x4 load(f32x4*, const bfloat16* p) {
    const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
}
//! Round to nearest even, NaN to 0x7FC0: the scalar rule of numeric/half.hpp.
CHILDTUNE_ALWAYS_INLINE void store(bfloat16* p, f32x4 x) {
    const __m128i u = _mm_castps_si128(x.v);
    const __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
    __m128i r = _mm_srli_epi32(_mm_add_epi32(u, _mm_add_epi32(lsb, _mm_set1_epi32(0x7FFF))), 16);
    const __m128i nan = _mm_castps_si128(_mm_cmpunord_ps(x.v, x.v));
    r = _mm_or_si128(_mm_andnot_si128(nan, r), _mm_and_si128(nan, _mm_set1_epi32(0x7FC0)));
    // Sign-extend the 16-bit results so the signed saturating pack is exact.
    r = _mm_srai_epi32(_mm_slli_epi32(r, 16), 16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(r, r));
}
// Other combinations (16-bit storage with double state, float16) go lane by lane
// through the scalar conversions; they are rare on CPUs and stay exact.
template <class V, class P>
    requires std::is_class_v<V>
CHILDTUNE_ALWAYS_INLINE V load(V*, const P* p) {
    alignas(16) typename V::scalar tmp[V::lanes];
    for (int l = 0; l < V::lanes; ++l) tmp[l] = widen<typename V::scalar>(p[l]);
    if constexpr (V::lanes == 4) return _mm_load_ps(tmp);
    else return _mm_load_pd(tmp);
}
template <class P, class V>
    requires std::is_class_v<V>
CHILDTUNE_ALWAYS_INLINE void store(P* p, V x) {
    alignas(16) typename V::scalar tmp[V::lanes];
    if constexpr (V::lanes == 4) _mm_store_ps(tmp, x.v);
    else _mm_store_pd(tmp, x.v);
    for (int l = 0; l < V::lanes; ++l) p[l] = narrow<P>(tmp[l]);
}

//! The SSE2 value type for state type S.
template <class S>
using sse2_vector = std::conditional_t<sizeof(S) == 4, f32x4, f64x2>;
#endif

} // namespace childtune::detail
