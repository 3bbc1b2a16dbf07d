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
CHILDTUNE_HD_INLINE float vsqrt(float x) { return sqrtf(x); }
CHILDTUNE_HD_INLINE double vsqrt(double x) { return sqrt(x); }
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
