// The step kernels' 16-bit loads and stores (exec/detail/simd.hpp, with F16C on
// AVX2/AVX-512 CPUs: exec/detail/half_f16c.hpp) against the scalar definition of
// numeric/half.hpp, through the same dispatch the step uses, on every instruction
// set this CPU has: every float16 pattern, and floats around every rounding and
// range boundary, with NaNs placed in every lane of otherwise ordinary vectors.

#include <childtune/exec/dispatch.hpp>
#include <childtune/exec/kernel.hpp>
#include <childtune/numeric/half.hpp>

#include <catch2/catch.hpp>

#include "support/cpu_isas.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

using namespace childtune;
using detail::cpu_isa;
using detail::float_bits;

namespace {

//! Widens (`Widen`) or narrows n 16-bit values as the element pass does.
template <class P, bool Widen>
struct convert_kernel {
    static constexpr cpu_isa max_isa = cpu_isa::avx512; // the element pass's cap (exec/kernel.hpp)
    static constexpr bool scalar_entry = true;

    template <cpu_isa I>
    static void run(const void* in, void* out, std::size_t n) {
        using V = typename detail::vector_for<float, I>::type;
        if constexpr (I == cpu_isa::scalar) {
            for (std::size_t i = 0; i < n; ++i) {
                if constexpr (Widen) static_cast<float*>(out)[i] = detail::widen<float>(static_cast<const P*>(in)[i]);
                else static_cast<P*>(out)[i] = detail::narrow<P>(static_cast<const float*>(in)[i]);
            }
        } else {
            constexpr std::size_t lanes = V::lanes; // n is a multiple of 16 (with_nan_lanes)
            for (std::size_t i = 0; i < n; i += lanes) {
                if constexpr (Widen) {
                    const V v = detail::load(static_cast<V*>(nullptr), static_cast<const P*>(in) + i);
                    detail::store(static_cast<float*>(out) + i, v);
                } else {
                    const V v = detail::load(static_cast<V*>(nullptr), static_cast<const float*>(in) + i);
                    detail::store(static_cast<P*>(out) + i, v);
                }
            }
        }
    }
};

//! `values` followed by copies in which one lane of every 16-element group is
//! replaced by `nan` (lane k of group v for k = v mod 16), padded to a multiple
//! of 16: an AVX-512 vector (two F16C halves) sees a NaN in either half alone,
//! an AVX2 one a NaN in each lane and clean neighbours.
template <class T>
std::vector<T> with_nan_lanes(std::vector<T> values, T nan) {
    while (values.size() % 16 != 0) values.push_back(values[values.size() % 16]);
    const std::size_t n = values.size();
    for (std::size_t i = 0; i < n; ++i) values.push_back((i / 16) % 16 == i % 16 ? nan : values[i]);
    return values;
}

//! Floats whose float16 rounding is decided near a boundary: for every exponent
//! from below the smallest subnormal to past the overflow threshold, mantissas
//! just below, at and above the ties of the 13 (or more) dropped bits.
std::vector<float> boundary_floats() {
    std::vector<float> out;
    std::mt19937 rng(17);
    for (std::uint32_t exponent = 95; exponent <= 145; ++exponent)
        for (std::uint32_t high : {0u, 1u, 2u, 0x3FEu, 0x3FFu, 0x200u, 0x155u}) {
            const std::uint32_t dropped = exponent >= 113 ? 13 : std::min<std::uint32_t>(23, 126 - exponent);
            const std::uint32_t tie = 1u << (dropped - 1);
            for (std::uint32_t low : {0u, 1u, tie - 1, tie, tie + 1, 2 * tie - 1, static_cast<std::uint32_t>(rng()) & (2 * tie - 1)})
                for (std::uint32_t sign : {0u, 0x80000000u}) {
                    const std::uint32_t mantissa = ((high << dropped) | low) & 0x7FFFFFu;
                    const std::uint32_t u = sign | (exponent << 23) | mantissa;
                    float f;
                    std::memcpy(&f, &u, sizeof f);
                    out.push_back(f);
                }
        }
    for (std::uint32_t u : {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F800000u, 0xFF800000u, 0x7F7FFFFFu,
                            0x477FEFFFu, 0x477FF000u, 0x477FE000u, 0x33000000u, 0x33000001u, 0x32FFFFFFu, 0x387FE000u,
                            0x387FF000u, 0x38800000u, 0x7FC00000u, 0x7F800001u, 0xFFFFFFFFu, 0x7FBFE000u}) {
        float f;
        std::memcpy(&f, &u, sizeof f);
        out.push_back(f);
    }
    std::uniform_int_distribution<std::uint32_t> any;
    for (int i = 0; i < 100'000; ++i) {
        const std::uint32_t u = any(rng);
        float f;
        std::memcpy(&f, &u, sizeof f);
        out.push_back(f);
    }
    return out;
}

} // namespace

TEST_CASE("float16 lanes: widening equals the scalar definition for every pattern", "[exec][float16]") {
    std::vector<float16> all;
    for (std::uint32_t h = 0; h <= 0xFFFF; ++h) all.push_back(float16::from_bits(static_cast<std::uint16_t>(h)));
    // A signalling NaN (F16C would quieten it) in one lane of ordinary vectors.
    const std::vector<float16> in = with_nan_lanes(all, float16::from_bits(0x7C01));
    for (const auto isa : test_support::supported_cpu_isas()) {
        CAPTURE(static_cast<int>(isa));
        std::vector<float> out(in.size());
        detail::dispatch<convert_kernel<float16, true>>(isa, static_cast<const void*>(in.data()),
                                                         static_cast<void*>(out.data()), in.size());
        for (std::size_t i = 0; i < in.size(); ++i) {
            INFO("pattern 0x" << std::hex << in[i].bits);
            REQUIRE(float_bits(out[i]) == float_bits(detail::float_from_float16_bits(in[i].bits)));
        }
    }
}

TEST_CASE("float16 lanes: narrowing equals the scalar definition at every rounding boundary", "[exec][float16]") {
    float payload_nan;
    const std::uint32_t payload_nan_bits = 0xFFC12345u; // a quiet NaN with a payload F16C would keep
    std::memcpy(&payload_nan, &payload_nan_bits, sizeof payload_nan);
    const std::vector<float> in = with_nan_lanes(boundary_floats(), payload_nan);
    for (const auto isa : test_support::supported_cpu_isas()) {
        CAPTURE(static_cast<int>(isa));
        std::vector<float16> out(in.size());
        detail::dispatch<convert_kernel<float16, false>>(isa, static_cast<const void*>(in.data()),
                                                          static_cast<void*>(out.data()), in.size());
        for (std::size_t i = 0; i < in.size(); ++i) {
            INFO("float 0x" << std::hex << float_bits(in[i]));
            REQUIRE(out[i].bits == detail::float16_bits_from_float(in[i]));
        }
    }
}

TEST_CASE("bfloat16 lanes: both directions equal the scalar definition", "[exec][bfloat16]") {
    std::vector<bfloat16> all;
    for (std::uint32_t h = 0; h <= 0xFFFF; ++h) all.push_back(bfloat16::from_bits(static_cast<std::uint16_t>(h)));
    float payload_nan;
    const std::uint32_t payload_nan_bits = 0x7FA00001u; // a signalling NaN: narrowing writes 0x7FC0
    std::memcpy(&payload_nan, &payload_nan_bits, sizeof payload_nan);
    const std::vector<float> floats = with_nan_lanes(boundary_floats(), payload_nan);
    for (const auto isa : test_support::supported_cpu_isas()) {
        CAPTURE(static_cast<int>(isa));
        std::vector<float> wide(all.size());
        detail::dispatch<convert_kernel<bfloat16, true>>(isa, static_cast<const void*>(all.data()),
                                                          static_cast<void*>(wide.data()), all.size());
        for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(float_bits(wide[i]) == (std::uint32_t{all[i].bits} << 16));
        std::vector<bfloat16> narrow(floats.size());
        detail::dispatch<convert_kernel<bfloat16, false>>(isa, static_cast<const void*>(floats.data()),
                                                           static_cast<void*>(narrow.data()), floats.size());
        for (std::size_t i = 0; i < floats.size(); ++i) {
            INFO("float 0x" << std::hex << float_bits(floats[i]));
            REQUIRE(narrow[i].bits == detail::bfloat16_bits_from_float(floats[i]));
        }
    }
}
