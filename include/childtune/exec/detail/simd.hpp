#pragma once
//! \file
//! The small vector vocabulary the CPU step is written in.
//!
//! Update rules are templates over a value type V and a lane-mask type K: with
//! V = float/double and K = bool they are the scalar definition (numeric/lanes.hpp,
//! also the code a CUDA or Thrust kernel runs); with `simd<S, N>` the same source
//! text runs N lanes at a time.
//!
//! `simd` wraps the compilers' generic vectors (`vector_size`), not intrinsics:
//! their operators are built in, so a rule instantiated with a 32- or 64-byte
//! vector compiles in any function and becomes AVX2 or AVX-512 code once it is
//! inlined into a function compiled for that target (exec/cpu_step.hpp), while the
//! 16-byte form is SSE2, part of every x86-64 target. Users keep their ordinary
//! flags (plain -O2, no -march, no fast-math) — the compiler's own vectoriser would
//! give up on `std::sqrt`, which must set errno (DESIGN.md §4). The one operation
//! with no generic form, the square root, is taken 128 bits at a time with SSE2.
//! Each operation is one IEEE-754 operation in every form, so all widths and the
//! scalar definition give identical bits (tested).

#include <childtune/config.hpp>
#include <childtune/exec/detail/half_f16c.hpp>
#include <childtune/exec/detail/wide_sqrt.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/lanes.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

// Wide generic vectors passed or returned by value in functions compiled without
// AVX make GCC and clang warn that such a function's ABI would differ from an AVX
// build. Every function here is always-inlined into the step kernels, so no such
// boundary exists; the warnings are silenced here, but GCC's note about
// *parameters* is an `inform` that no pragma reaches, so vector parameters are
// const references throughout (see update/masking.hpp).
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_SSE2

//! The compiler's generic vector of N elements of T.
template <class T, int N>
struct native_vector {
    typedef T type __attribute__((vector_size(sizeof(T) * N)));
};
template <class T, int N>
using native_vector_t = typename native_vector<T, N>::type;

//! The integer type of a lane of state type S (lane masks, bit manipulation).
template <class S>
using lane_int = std::conditional_t<sizeof(S) == 4, std::int32_t, std::int64_t>;
template <class S>
using lane_uint = std::make_unsigned_t<lane_int<S>>;

//! N lanes of S (float or double).
template <class S, int N>
struct simd {
    using scalar = S;
    static constexpr int lanes = N;
    using native = native_vector_t<S, N>;
    native v;

    simd() = default;
    CHILDTUNE_ALWAYS_INLINE simd(const native& x) : v(x) {}
    //! Broadcast. The bits are broadcast as integers (0 + bits is exact for every
    //! pattern; the floating `0 + x` would turn -0 into +0), which compilers emit as
    //! one broadcast instruction.
    CHILDTUNE_ALWAYS_INLINE simd(S x) {
        using ivec = native_vector_t<std::conditional_t<sizeof(S) == 4, std::int32_t, std::int64_t>, N>;
        std::conditional_t<sizeof(S) == 4, std::int32_t, std::int64_t> bits;
        std::memcpy(&bits, &x, sizeof bits);
        v = reinterpret_cast<native>(ivec{} + bits);
    }
};

//! A lane mask: all bits of a lane set (kept) or clear.
template <class S, int N>
struct simd_mask {
    native_vector_t<lane_int<S>, N> v;
};

template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> operator+(const simd<S, N>& a, const simd<S, N>& b) { return a.v + b.v; }
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> operator-(const simd<S, N>& a, const simd<S, N>& b) { return a.v - b.v; }
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> operator*(const simd<S, N>& a, const simd<S, N>& b) { return a.v * b.v; }
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> operator/(const simd<S, N>& a, const simd<S, N>& b) { return a.v / b.v; }

//! Correctly rounded square root: SSE2 `sqrtps`/`sqrtpd` for 16-byte vectors,
//! one ymm or zmm instruction for wider ones (exec/detail/wide_sqrt.hpp).
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> vsqrt(const simd<S, N>& x) {
    constexpr int per_chunk = 16 / static_cast<int>(sizeof(S));
    using chunk = native_vector_t<S, per_chunk>;
    if constexpr (N == per_chunk) {
        if constexpr (sizeof(S) == 4) return reinterpret_cast<chunk>(_mm_sqrt_ps(reinterpret_cast<__m128>(x.v)));
        else return reinterpret_cast<chunk>(_mm_sqrt_pd(reinterpret_cast<__m128d>(x.v)));
    } else {
#if CHILDTUNE_HAS_AVX2_DISPATCH
        simd<S, N> root;
        if constexpr (N == 2 * per_chunk) sqrt_avx<S>(root.v, x.v);
        else if constexpr (N == 4 * per_chunk) sqrt_avx512<S>(root.v, x.v);
        else static_assert(N == per_chunk, "vsqrt: 16-, 32- and 64-byte vectors");
        return root;
#else
        static_assert(N == per_chunk, "vsqrt: wide vectors only where the AVX kernels are built");
#endif
    }
}

//! Lane-wise comparisons (ordered: false for NaN lanes, as the scalar operators).
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd_mask<S, N> operator<(const simd<S, N>& a, const simd<S, N>& b) {
    return {a.v < b.v};
}
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd_mask<S, N> operator>(const simd<S, N>& a, const simd<S, N>& b) {
    return {a.v > b.v};
}

//! Lane-wise k ? a : b, bit for bit (signed zeros and NaN payloads pass unchanged).
//! 32-byte vectors test the sign bit, which every lane mask here carries (all bits
//! set or none): GCC and clang turn that into one `vblendvps`/`vblendvpd`
//! instead of and, and-not and or, which makes the AVX2 kernels' masked lanes
//! cheaper (docs/benchmarks.md, "Masked lanes by blend"). 64-byte vectors keep the
//! bit operations (GCC 12 stops with an internal compiler error in do_store_flag
//! on the vector conditional in AVX-512 code, and AVX-512 folds the three into
//! one `vpternlog`), and so do 16-byte ones (SSE2 has no blend).
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd<S, N> select(const simd_mask<S, N>& k, const simd<S, N>& a, const simd<S, N>& b) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if constexpr (sizeof(k.v) == 32) {
        return k.v < 0 ? a.v : b.v;
    } else
#endif
    {
        using ivec = native_vector_t<lane_int<S>, N>;
        const ivec bits = (reinterpret_cast<ivec>(a.v) & k.v) | (reinterpret_cast<ivec>(b.v) & ~k.v);
        return reinterpret_cast<typename simd<S, N>::native>(bits);
    }
}
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd_mask<S, N> mask_or(const simd_mask<S, N>& a, const simd_mask<S, N>& b) {
    return {a.v | b.v};
}

//! Lane masks from the low N bits of a keep word (bit j: lane j kept).
//! Lane j isolates its bit (0 or 2^j), negates it (0, or a number with the sign
//! bit set, since j < the lane's width - 1) and spreads the sign bit with an
//! arithmetic shift. No comparison on purpose: `(select_bit & bits) != 0` made
//! GCC 13.3 crash (internal compiler error in do_store_flag) in AVX-512 code.
template <class S, int N>
CHILDTUNE_ALWAYS_INLINE simd_mask<S, N> lane_mask(simd<S, N>*, std::uint64_t bits) {
    using ivec = native_vector_t<lane_int<S>, N>;
    static_assert(N < 8 * static_cast<int>(sizeof(lane_int<S>)), "lane j's bit must stay below the sign bit");
    ivec select_bit;
    for (int l = 0; l < N; ++l) select_bit[l] = static_cast<lane_int<S>>(lane_int<S>{1} << l);
    const ivec isolated = select_bit & static_cast<lane_int<S>>(bits);
    return {(-isolated) >> (8 * static_cast<int>(sizeof(lane_int<S>)) - 1)};
}

// ---- loads and stores: widen the stored element type to the state type, round back

// Raw vectors never cross a function boundary by value here: GCC and clang warn
// (-Wpsabi) about wide vectors passed or returned by value in a function
// compiled without AVX, even when it is always inlined. They travel in simd
// structs or by reference.
template <class T, int N>
CHILDTUNE_ALWAYS_INLINE void load_native(const T* p, native_vector_t<T, N>& v) {
    std::memcpy(&v, p, sizeof v);
}
template <class T, int N>
CHILDTUNE_ALWAYS_INLINE void store_native(T* p, const native_vector_t<T, N>& v) {
    std::memcpy(p, &v, sizeof v);
}

//! Lane-wise `condition ? a : b` for unsigned lanes (GCC and clang disagree on
//! vector `?:` with a signed condition).
//! A raw vector in a struct, so it can be returned by value (see load_native).
template <class U>
struct boxed {
    U v;
};
template <class U, class C>
CHILDTUNE_ALWAYS_INLINE boxed<U> pick(const C& condition, const U& a, const U& b) {
    const U m = reinterpret_cast<U>(condition);
    return {(a & m) | (b & ~m)};
}

//! float lanes from bfloat16 bits: the 16 bits are the float's upper half.
template <int N>
CHILDTUNE_ALWAYS_INLINE simd<float, N> floats_from_bfloat16(const bfloat16* p) {
    using u32 = native_vector_t<std::uint32_t, N>;
    native_vector_t<std::uint16_t, N> h;
    load_native<std::uint16_t, N>(reinterpret_cast<const std::uint16_t*>(p), h);
    const u32 wide = __builtin_convertvector(h, u32);
    return reinterpret_cast<native_vector_t<float, N>>(wide << 16);
}
//! Round to nearest even, NaN to 0x7FC0: the scalar rule of numeric/half.hpp.
template <int N>
CHILDTUNE_ALWAYS_INLINE void floats_to_bfloat16(bfloat16* p, const native_vector_t<float, N>& x) {
    using u32 = native_vector_t<std::uint32_t, N>;
    const u32 u = reinterpret_cast<u32>(x);
    const u32 rounded = (u + ((u >> 16) & 1u) + 0x7FFFu) >> 16;
    const u32 bits = pick(x != x, u32{} + 0x7FC0u, rounded).v;
    const native_vector_t<std::uint16_t, N> narrow = __builtin_convertvector(bits, native_vector_t<std::uint16_t, N>);
    store_native<std::uint16_t, N>(reinterpret_cast<std::uint16_t*>(p), narrow);
}

//! float lanes from IEEE binary16 bits (exact), as float_from_float16_bits.
template <int N>
CHILDTUNE_ALWAYS_INLINE simd<float, N> floats_from_float16(const float16* p) {
    using u32 = native_vector_t<std::uint32_t, N>;
    using f32 = native_vector_t<float, N>;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    // Only the AVX2 and AVX-512 kernels have 8 or 16 float lanes (half_f16c.hpp).
    const auto* patterns = reinterpret_cast<const std::uint16_t*>(p);
    if constexpr (N == 8) {
        simd<float, N> fast;
        if (widen_float16x8_f16c(fast.v, patterns)) return fast;
    } else if constexpr (N == 16) {
        native_vector_t<float, 8> lo, hi;
        if (widen_float16x8_f16c(lo, patterns) && widen_float16x8_f16c(hi, patterns + 8))
            return simd<float, N>(__builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
#endif
    native_vector_t<std::uint16_t, N> raw;
    load_native<std::uint16_t, N>(reinterpret_cast<const std::uint16_t*>(p), raw);
    const u32 h = __builtin_convertvector(raw, u32);
    const u32 sign = (h & 0x8000u) << 16;
    const u32 exponent = (h >> 10) & 0x1Fu;
    const u32 mantissa = h & 0x3FFu;
    const u32 normal = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    const u32 special = sign | 0x7F800000u | (mantissa << 13);
    // Subnormals and zeros are mantissa * 2^-24, exact in float.
    const f32 tiny = __builtin_convertvector(mantissa, f32) * 0x1p-24f;
    const u32 subnormal = reinterpret_cast<u32>(tiny) | sign;
    const u32 bits = pick(exponent == 0x1Fu, special, pick(exponent == 0u, subnormal, normal).v).v;
    return reinterpret_cast<f32>(bits);
}
//! value >> shift, rounded to nearest even (lane-wise shifts).
template <class U>
CHILDTUNE_ALWAYS_INLINE boxed<U> round_shift(const U& value, const U& shift) {
    const U one = U{} + 1u;
    const U q = value >> shift;
    const U rem = value & ((one << shift) - 1u);
    const U half = one << (shift - 1u);
    const U up = reinterpret_cast<U>((rem > half) | ((rem == half) & ((q & 1u) != 0u)));
    return {q + (up & 1u)};
}

//! Round to nearest even, as float16_bits_from_float (integer arithmetic only).
template <int N>
CHILDTUNE_ALWAYS_INLINE void floats_to_float16(float16* p, const native_vector_t<float, N>& x) {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    // As floats_from_float16. A NaN in the upper half after the lower half was
    // written: the generic path below rewrites all sixteen, the same bits where
    // there is no NaN.
    auto* patterns = reinterpret_cast<std::uint16_t*>(p);
    if constexpr (N == 8) {
        if (narrow_float16x8_f16c(patterns, x)) return;
    } else if constexpr (N == 16) {
        const native_vector_t<float, 8> lo = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
        const native_vector_t<float, 8> hi = __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
        if (narrow_float16x8_f16c(patterns, lo) && narrow_float16x8_f16c(patterns + 8, hi)) return;
    }
#endif
    using u32 = native_vector_t<std::uint32_t, N>;
    const u32 u = reinterpret_cast<u32>(x);
    const u32 sign = (u >> 16) & 0x8000u;
    const u32 mag = u & 0x7FFFFFFFu;
    const u32 normal = round_shift<u32>(mag - (112u << 23), u32{} + 13u).v;
    // Subnormal shifts are 14..24; clamping keeps the other lanes' shifts defined.
    u32 shift = 126u - (mag >> 23);
    shift = pick(shift < 14u, u32{} + 14u, shift).v;
    shift = pick(shift > 24u, u32{} + 24u, shift).v;
    const u32 subnormal = round_shift<u32>((mag & 0x7FFFFFu) | 0x800000u, shift).v;
    const u32 special = pick(mag > 0x7F800000u, u32{} + 0x7E00u, u32{} + 0x7C00u).v;
    u32 bits = normal;
    bits = pick(mag < 0x38800000u, subnormal, bits).v;
    bits = pick(mag < 0x33000000u, u32{}, bits).v;
    bits = pick(mag >= 0x477FF000u, u32{} + 0x7C00u, bits).v;
    bits = pick(mag >= 0x7F800000u, special, bits).v;
    const native_vector_t<std::uint16_t, N> narrow = __builtin_convertvector(bits | sign, native_vector_t<std::uint16_t, N>);
    store_native<std::uint16_t, N>(reinterpret_cast<std::uint16_t*>(p), narrow);
}

//! Loads N stored elements as state lanes.
template <class S, int N, class P>
CHILDTUNE_ALWAYS_INLINE simd<S, N> load(simd<S, N>*, const P* p) {
    if constexpr (std::is_same_v<P, S>) {
        simd<S, N> r;
        load_native<S, N>(p, r.v);
        return r;
    } else if constexpr (std::is_same_v<P, double>) { // float state for double parameters
        native_vector_t<double, N> d;
        load_native<double, N>(p, d);
        return __builtin_convertvector(d, typename simd<S, N>::native);
    } else {
        simd<float, N> f;
        if constexpr (std::is_same_v<P, float>) load_native<float, N>(p, f.v);
        else if constexpr (std::is_same_v<P, bfloat16>) f = floats_from_bfloat16<N>(p);
        else f = floats_from_float16<N>(p);
        if constexpr (std::is_same_v<S, float>) return f;
        else return __builtin_convertvector(f.v, typename simd<S, N>::native);
    }
}
//! Stores state lanes rounded to the stored element type.
template <class P, class S, int N>
CHILDTUNE_ALWAYS_INLINE void store(P* p, const simd<S, N>& x) {
    if constexpr (std::is_same_v<P, S>) {
        store_native<S, N>(p, x.v);
    } else if constexpr (std::is_same_v<P, double>) {
        const native_vector_t<double, N> d = __builtin_convertvector(x.v, native_vector_t<double, N>);
        store_native<double, N>(p, d);
    } else {
        native_vector_t<float, N> f;
        if constexpr (std::is_same_v<S, float>) f = x.v;
        else f = __builtin_convertvector(x.v, native_vector_t<float, N>);
        if constexpr (std::is_same_v<P, float>) store_native<float, N>(p, f);
        else if constexpr (std::is_same_v<P, bfloat16>) floats_to_bfloat16<N>(p, f);
        else floats_to_float16<N>(p, f);
    }
}

//! The vector of state type S in a register of `Bytes` bytes.
template <class S, int Bytes>
using simd_of = simd<S, Bytes / static_cast<int>(sizeof(S))>;

#endif // CHILDTUNE_HAS_SSE2

} // namespace childtune::detail

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
