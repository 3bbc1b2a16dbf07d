#include <childtune/numeric/half.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

using childtune::bfloat16;
using childtune::float16;

namespace {
// Naive nearest-bfloat16 by comparing the two truncation neighbours in double.
std::uint16_t naive_bfloat16(float f) {
    if (std::isnan(f)) return 0x7FC0;
    const std::uint32_t u = childtune::detail::float_bits(f);
    const std::uint16_t lo = static_cast<std::uint16_t>(u >> 16);
    const std::uint16_t hi = static_cast<std::uint16_t>(lo + 1);
    if ((u & 0xFFFF) == 0) return lo;
    // IEEE rounding treats the value past the largest finite one as 2^128, not inf.
    const auto value = [](std::uint16_t b) {
        const double v = childtune::detail::float_from_bfloat16_bits(b);
        return std::isinf(v) ? std::copysign(std::ldexp(1.0, 128), v) : v;
    };
    const double dl = std::abs(double(f) - value(lo));
    const double dh = std::abs(value(hi) - double(f));
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}
} // namespace

TEST_CASE("bfloat16 widening is exact and narrowing round-trips every pattern", "[numeric][bfloat16]") {
    for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
        const float f = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(b)));
        const auto back = bfloat16(f).bits;
        if (std::isnan(f)) REQUIRE(back == 0x7FC0);
        else REQUIRE(back == b);
    }
}

TEST_CASE("bfloat16 rounds to nearest even like a naive reference", "[numeric][bfloat16]") {
    std::mt19937 rng(7);
    for (int i = 0; i < 200000; ++i) {
        const float f = childtune::detail::float_from_bits(static_cast<std::uint32_t>(rng()));
        REQUIRE(bfloat16(f).bits == naive_bfloat16(f));
    }
    CHECK(bfloat16(1.0f + 0x1p-8f).bits == 0x3F80);            // tie, even stays
    CHECK(bfloat16(1.0f + 3 * 0x1p-8f).bits == 0x3F82);        // tie, odd rounds up
    CHECK(bfloat16(std::numeric_limits<float>::max()).bits == 0x7F80); // overflows to inf
}

TEST_CASE("float16 widening round-trips every pattern", "[numeric][float16]") {
    for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
        const float f = static_cast<float>(float16::from_bits(static_cast<std::uint16_t>(b)));
        const auto back = float16(f).bits;
        if (std::isnan(f)) REQUIRE((back & 0x7FFF) == 0x7E00);
        else REQUIRE(back == b);
    }
}

TEST_CASE("float16 narrowing: hand-computed values", "[numeric][float16]") {
    CHECK(float16(65504.0f).bits == 0x7BFF);
    CHECK(float16(65519.99f).bits == 0x7BFF);
    CHECK(float16(65520.0f).bits == 0x7C00);   // tie between 65504 (odd) and inf: inf
    CHECK(float16(-1e9f).bits == 0xFC00);
    CHECK(float16(0x1p-24f).bits == 0x0001);   // smallest subnormal
    CHECK(float16(0x1p-25f).bits == 0x0000);   // tie with zero: even
    CHECK(float16(0x1.8p-25f).bits == 0x0001);
    CHECK(float16(3 * 0x1p-25f).bits == 0x0002); // 1.5 ulp: tie, rounds to even 2
    CHECK(float16(0x1p-14f).bits == 0x0400);   // smallest normal
    CHECK(float16(1.0f + 0x1p-11f).bits == 0x3C00); // tie, even
    CHECK(float16(1.0f + 3 * 0x1p-11f).bits == 0x3C02);
    CHECK(float16(-0.0f).bits == 0x8000);
}

#if defined(__FLT16_MAX__) && !defined(__clang__)
TEST_CASE("float16 narrowing agrees with the compiler's _Float16", "[numeric][float16]") {
    std::mt19937 rng(11);
    for (int i = 0; i < 500000; ++i) {
        float f = childtune::detail::float_from_bits(static_cast<std::uint32_t>(rng()));
        if (i % 2) f = std::ldexp(static_cast<float>(rng() % 100000) / 1000.0f, static_cast<int>(rng() % 40) - 30);
        if (std::isnan(f)) continue;
        const _Float16 h = static_cast<_Float16>(f);
        std::uint16_t ref;
        std::memcpy(&ref, &h, 2);
        REQUIRE(float16(f).bits == ref);
    }
}
#endif
