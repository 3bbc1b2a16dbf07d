#pragma once
//! \file
//! Arithmetic that rounds the same way in host code and in CUDA device code.
//!
//! nvcc contracts `a * b + c` into one fused multiply-add by default, which
//! rounds once instead of twice; the CPU code is compiled without contraction.
//! Where childtune promises bit-identical results on both (Fisher scores, the
//! clipping norm), the product is written with mul_rn, which nvcc never fuses.

#include <childtune/config.hpp>

#include <type_traits>

namespace childtune::detail {

//! a * b rounded to the type on its own (never fused into a following add).
template <class T>
CHILDTUNE_HD_INLINE T mul_rn(T a, T b) {
#if defined(__CUDA_ARCH__)
    if constexpr (std::is_same_v<T, float>) return __fmul_rn(a, b);
    else if constexpr (std::is_same_v<T, double>) return __dmul_rn(a, b);
    else return a * b;
#else
    return a * b;
#endif
}

} // namespace childtune::detail
