#pragma once
//! \file
//! 16-bit floating-point storage types for parameters and gradients.
//!
//! childtune never computes in 16 bits: parameters stored as bfloat16 or float16
//! are widened to the optimizer-state type, updated, and rounded back once per
//! step (round to nearest, ties to even). The rounding rules match LibTorch's
//! `c10::BFloat16` and `c10::Half`, so a LibTorch user sees the same bits.

#include <childtune/config.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace childtune {

namespace detail {
CHILDTUNE_HD inline std::uint32_t float_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
CHILDTUNE_HD inline float float_from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

//! Round-to-nearest-even float → bfloat16 bits; every NaN becomes the canonical
//! quiet NaN 0x7FC0, as in c10::BFloat16.
CHILDTUNE_HD inline std::uint16_t bfloat16_bits_from_float(float f) {
    if (f != f) return 0x7FC0u;
    const std::uint32_t u = float_bits(f);
    const std::uint32_t bias = ((u >> 16) & 1u) + 0x7FFFu;
    return static_cast<std::uint16_t>((u + bias) >> 16);
}

CHILDTUNE_HD inline float float_from_bfloat16_bits(std::uint16_t b) {
    return float_from_bits(static_cast<std::uint32_t>(b) << 16);
}

//! Round-to-nearest-even float → IEEE binary16 bits, integer arithmetic only so
//! the result does not depend on the floating-point environment.
CHILDTUNE_HD inline std::uint16_t float16_bits_from_float(float f) {
    const std::uint32_t u = float_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t mag = u & 0x7FFFFFFFu;
    if (mag >= 0x7F800000u) return static_cast<std::uint16_t>(sign | (mag > 0x7F800000u ? 0x7E00u : 0x7C00u));
    if (mag >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u); // >= 65520 rounds to inf
    const auto round_shift = [](std::uint32_t value, std::uint32_t shift) {
        const std::uint32_t q = value >> shift;
        const std::uint32_t rem = value & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1u);
        return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
    };
    if (mag < 0x38800000u) { // below 2^-14: binary16 subnormal or zero
        if (mag < 0x33000000u) return static_cast<std::uint16_t>(sign); // < 2^-25
        const std::uint32_t exponent = mag >> 23;
        const std::uint32_t mantissa = (mag & 0x7FFFFFu) | 0x800000u;
        return static_cast<std::uint16_t>(sign | round_shift(mantissa, 126u - exponent));
    }
    const std::uint32_t rebased = mag - (112u << 23); // exponent bias 127 -> 15
    return static_cast<std::uint16_t>(sign | round_shift(rebased, 13u));
}

CHILDTUNE_HD inline float float_from_float16_bits(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1Fu;
    std::uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1Fu) return float_from_bits(sign | 0x7F800000u | (mantissa << 13));
    if (exponent == 0) {
        if (mantissa == 0) return float_from_bits(sign);
        exponent = 1;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --exponent;
        }
        mantissa &= 0x3FFu;
    }
    return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
} // namespace detail

//! Lets the 16-bit storage types view other libraries' 16-bit objects
//! (c10::BFloat16, Eigen::half...) in place without breaking strict aliasing.
#if defined(__GNUC__) || defined(__clang__)
#define CHILDTUNE_MAY_ALIAS __attribute__((__may_alias__))
#else
#define CHILDTUNE_MAY_ALIAS
#endif

//! bfloat16 storage (1 sign, 8 exponent, 7 mantissa bits); layout-compatible with
//! `c10::BFloat16`, `Eigen::bfloat16` and `__nv_bfloat16`. Trivial, like the
//! built-in floating types: a default-constructed value is uninitialised.
struct CHILDTUNE_MAY_ALIAS bfloat16 {
    //! The raw bits (sign, exponent, mantissa).
    std::uint16_t bits;

    bfloat16() = default;
    //! Rounds `f` to nearest, ties to even (NaN becomes 0x7FC0, as c10::BFloat16).
    CHILDTUNE_HD explicit bfloat16(float f) : bits(detail::bfloat16_bits_from_float(f)) {}
    //! The value with raw bits `b`.
    CHILDTUNE_HD static bfloat16 from_bits(std::uint16_t b) {
        bfloat16 r;
        r.bits = b;
        return r;
    }
    //! Exact widening to float.
    CHILDTUNE_HD explicit operator float() const { return detail::float_from_bfloat16_bits(bits); }
    //! Bitwise equality (so +0 != -0 and NaN == the same NaN).
    friend bool operator==(bfloat16, bfloat16) = default;
};

//! IEEE binary16 storage; layout-compatible with `c10::Half`, `Eigen::half` and `__half`.
struct CHILDTUNE_MAY_ALIAS float16 {
    //! The raw bits (sign, 5 exponent, 10 mantissa bits).
    std::uint16_t bits;

    float16() = default;
    //! Rounds `f` to nearest, ties to even, as c10::Half.
    CHILDTUNE_HD explicit float16(float f) : bits(detail::float16_bits_from_float(f)) {}
    //! The value with raw bits `b`.
    CHILDTUNE_HD static float16 from_bits(std::uint16_t b) {
        float16 r;
        r.bits = b;
        return r;
    }
    //! Exact widening to float.
    CHILDTUNE_HD explicit operator float() const { return detail::float_from_float16_bits(bits); }
    //! Bitwise equality (so +0 != -0 and NaN == the same NaN).
    friend bool operator==(float16, float16) = default;
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2);
static_assert(std::is_trivial_v<bfloat16> && std::is_trivial_v<float16>);

namespace detail {
//! Widens a stored parameter/gradient element to the compute type S.
template <class S, class P>
CHILDTUNE_HD S widen(P x) {
    if constexpr (sizeof(P) == 2) return static_cast<S>(static_cast<float>(x));
    else return static_cast<S>(x);
}
//! Rounds a compute-type value back to the storage type P.
template <class P, class S>
CHILDTUNE_HD P narrow(S x) {
    if constexpr (sizeof(P) == 2) return P(static_cast<float>(x));
    else return static_cast<P>(x);
}
} // namespace detail

} // namespace childtune
