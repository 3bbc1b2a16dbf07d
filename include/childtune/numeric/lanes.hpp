#pragma once
//! \file
//! Scalar forms of the lane operations update rules are written in.
//!
//! A rule's `apply` is a template over a value type V and a lane-mask type K and
//! calls `select`, `vsqrt`, `load`, `store` and `lane_mask` unqualified. For
//! V = float/double and K = bool the overloads below make it the scalar
//! definition (what CPU fallbacks and CUDA/Thrust kernels run); vector types
//! bring their own overloads, found by argument-dependent lookup
//! (exec/detail/simd.hpp).

#include <childtune/config.hpp>
#include <childtune/numeric/half.hpp>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace childtune::detail {

// ---- scalar forms ---------------------------------------------------------------
CHILDTUNE_HD_INLINE float select(bool k, float a, float b) { return k ? a : b; }
CHILDTUNE_HD_INLINE double select(bool k, double a, double b) { return k ? a : b; }
// On a GPU, nvcc's IEEE sqrt and division leave their fast path for a zero
// operand (a branch to a fix-up routine per lane). Child-Tuning_D's never-kept
// elements keep zero moments, so their AdamW arithmetic took that path on 70 %
// of the lanes: on an H200 a fixed mask at p = 0.3 cost 1.4x the dense step, an
// all-kept one 1.1x. The zero cases are answered first, with the values IEEE
// gives (sqrt(±0) = ±0; ±0 / b = ±0 for b > 0, +inf included): CT_D 10-13 %
// faster, the dense step 2-4 % slower for the compare (docs/benchmarks.md).
CHILDTUNE_HD_INLINE float vsqrt(float x) {
#if defined(__CUDA_ARCH__)
    if (x == 0.0f) return x;
#endif
    return sqrtf(x);
}
CHILDTUNE_HD_INLINE double vsqrt(double x) {
#if defined(__CUDA_ARCH__)
    if (x == 0.0) return x;
#endif
    return sqrt(x);
}
//! a / b (rules call it where a zero dividend is common; vector types divide as is).
template <class V>
CHILDTUNE_HD_INLINE V vdiv(const V& a, const V& b) {
#if defined(__CUDA_ARCH__)
    if constexpr (std::is_floating_point_v<V>)
        if (a == V(0) && b > V(0)) return a;
#endif
    return a / b;
}
template <class S, class P>
    requires std::is_floating_point_v<S>
CHILDTUNE_HD_INLINE S load(S*, const P* p) { return widen<S>(*p); }
template <class P, class S>
    requires std::is_floating_point_v<S>
CHILDTUNE_HD_INLINE void store(P* p, S x) { *p = narrow<P>(x); }
template <class S>
    requires std::is_floating_point_v<S>
CHILDTUNE_HD_INLINE bool lane_mask(S*, std::uint64_t bits) { return (bits & 1u) != 0; }

// ---- a lane mask known to keep every lane --------------------------------------
//! The lane mask of a run where every element is kept (a dense tensor, a word of
//! a mask with all 64 bits set): selects fold away at compile time, so such runs
//! pay nothing for masking.
struct all_lanes {};
template <class V>
CHILDTUNE_HD_INLINE V select(all_lanes, const V& a, const V&) {
    return a;
}
CHILDTUNE_HD_INLINE all_lanes mask_or(all_lanes, all_lanes) { return {}; }
template <class K>
CHILDTUNE_HD_INLINE all_lanes mask_or(all_lanes, const K&) {
    return {};
}
template <class K>
CHILDTUNE_HD_INLINE all_lanes mask_or(const K&, all_lanes) {
    return {};
}

} // namespace childtune::detail
