#pragma once
//! \file
//! ARS-7 blocks of the keep stream (mask definition 4) for the x86 generators:
//! the counters of 4 or 2 x 8 lanes (SSE2 or AVX2 registers of counter words 0
//! and 1; words 2 and 3 are the tensor key and the step) in, the four output
//! words of each lane out, in the registers-of-words shape the Philox rounds
//! produce. The AVX-512 kernels use the AVX2 form: on the AMD cores measured,
//! a 512-bit AES instruction costs two 256-bit ones.
//!
//! AES instructions work on whole 128-bit blocks, so the lanes' counters are
//! transposed into blocks (two unpacks per pair of registers), encrypted, and
//! transposed back. Lane j and lane j + 4 share a register, which makes both
//! transposes in-lane unpacks with no permutes. VAES encrypts two blocks per
//! instruction; CPUs with AES-NI but no VAES (Haswell to Skylake, Zen 2,
//! Skylake-X) run the same blocks one per instruction, and CPUs with neither
//! the scalar rounds of random/ars.hpp.

#include <childtune/config.hpp>
#include <childtune/exec/detail/cpu_features.hpp>
#include <childtune/random/ars.hpp>
#include <childtune/random/detail/aes_cap.hpp>
#include <childtune/random/detail/philox_keep.hpp>

#include <cstddef>
#include <cstdint>

#if CHILDTUNE_HAS_SSE2
#include <immintrin.h>
#if defined(__GNUC__) || defined(__clang__)
#include <cpuid.h>
#endif
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_SSE2
//! Lanes `lanes` of counter words lo and hi through ARS-7 in scalar code:
//! w[k][lane] is word k of the lane's block.
inline void ars_words_scalar(const philox_keep_params& p, const std::uint32_t* lo, const std::uint32_t* hi, unsigned lanes,
                             std::uint32_t (*w)[16]) {
    for (unsigned j = 0; j < lanes; ++j) {
        const philox_block b = ars4x32<7>({{lo[j], hi[j], p.tensor_key, p.step}}, ars_keep_key(p.k0, p.k1));
        for (unsigned k = 0; k < 4; ++k) w[k][j] = b.w[k];
    }
}
//! Whether this CPU has AES-NI (CPUID leaf 1, ECX bit 25).
inline bool cpu_has_aesni() {
    static const bool has = [] {
#if defined(__GNUC__) || defined(__clang__)
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 25)) != 0;
#else
        return false;
#endif
    }();
    return has;
}
//! The instructions definition 4's rounds take: VAES only in the AVX2 (and
//! AVX-512) kernels, whose ymm registers it needs (`wide`; the SSE2 passes
//! read `vaes` as AES-NI, which every VAES CPU has), under the cap
//! CHILDTUNE_MAX_AES (random/detail/aes_cap.hpp). Views resolve `automatic`
//! once, when made (mask/bernoulli.hpp); for them the passes' call is one compare.
inline aes_path resolve_aes_path(aes_path asked, bool wide) {
    if (asked != aes_path::automatic) return asked;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const bool has_vaes = cpu_has_vaes();
#else
    const bool has_vaes = false;
#endif
    return choose_aes_path(asked, wide, environment_aes_cap().cap, cpu_has_aesni(), has_vaes);
}

// ---- SSE2 registers: 4 lanes --------------------------------------------------
//! ARS-7 on N blocks, one per register, with AES-NI: N independent chains in
//! flight for the instructions' latency.
template <std::size_t N>
__attribute__((target("aes"))) CHILDTUNE_ALWAYS_INLINE void ars7_aesni(const philox_keep_params& p, __m128i (&x)[N]) {
    const __m128i weyl = _mm_set_epi64x(static_cast<long long>(ars_weyl_hi), static_cast<long long>(ars_weyl_lo));
    __m128i k = _mm_setr_epi32(static_cast<int>(p.k0), static_cast<int>(p.k1), 0, 0);
#pragma GCC unroll 16
    for (auto& b : x) b = _mm_xor_si128(b, k);
#pragma GCC unroll 6
    for (int r = 1; r < 7; ++r) {
        k = _mm_add_epi64(k, weyl);
#pragma GCC unroll 16
        for (auto& b : x) b = _mm_aesenc_si128(b, k);
    }
    k = _mm_add_epi64(k, weyl);
#pragma GCC unroll 16
    for (auto& b : x) b = _mm_aesenclast_si128(b, k);
}
//! Ten instructions of transposes around the rounds: lanes' counters into
//! blocks, blocks' words back into lanes.
__attribute__((target("aes"))) inline void ars_words_aesni_sse2(const philox_keep_params& p, __m128i lo, __m128i hi,
                                                                __m128i (&w)[4]) {
    const __m128i ks = _mm_unpacklo_epi32(_mm_set1_epi32(static_cast<int>(p.tensor_key)), _mm_set1_epi32(static_cast<int>(p.step)));
    const __m128i a = _mm_unpacklo_epi32(lo, hi), b = _mm_unpackhi_epi32(lo, hi);
    __m128i v[4] = {_mm_unpacklo_epi64(a, ks), _mm_unpackhi_epi64(a, ks), _mm_unpacklo_epi64(b, ks), _mm_unpackhi_epi64(b, ks)};
    ars7_aesni(p, v);
    const __m128i t0 = _mm_unpacklo_epi32(v[0], v[1]), t1 = _mm_unpacklo_epi32(v[2], v[3]);
    const __m128i t2 = _mm_unpackhi_epi32(v[0], v[1]), t3 = _mm_unpackhi_epi32(v[2], v[3]);
    w[0] = _mm_unpacklo_epi64(t0, t1);
    w[1] = _mm_unpackhi_epi64(t0, t1);
    w[2] = _mm_unpacklo_epi64(t2, t3);
    w[3] = _mm_unpackhi_epi64(t2, t3);
}
//! Four lanes' words on the path `path` (AES-NI or the scalar rounds).
inline void ars_words_sse2(const philox_keep_params& p, aes_path path, __m128i lo, __m128i hi, __m128i (&w)[4]) {
    if (path != aes_path::software) return ars_words_aesni_sse2(p, lo, hi, w);
    alignas(16) std::uint32_t l[4], h[4], out[4][16];
    _mm_store_si128(reinterpret_cast<__m128i*>(l), lo);
    _mm_store_si128(reinterpret_cast<__m128i*>(h), hi);
    ars_words_scalar(p, l, h, 4, out);
    for (unsigned k = 0; k < 4; ++k) w[k] = _mm_load_si128(reinterpret_cast<const __m128i*>(out[k]));
}
#endif

#if CHILDTUNE_HAS_AVX2_DISPATCH
// ---- AVX2 registers: 8 lanes, two sets in flight --------------------------------
//! Counters of lanes (j, j + 4) as the blocks of register j.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void ars_blocks_avx2(const philox_keep_params& p, __m256i lo, __m256i hi,
                                                                             __m256i* v) {
    const __m256i ks =
        _mm256_unpacklo_epi32(_mm256_set1_epi32(static_cast<int>(p.tensor_key)), _mm256_set1_epi32(static_cast<int>(p.step)));
    const __m256i a = _mm256_unpacklo_epi32(lo, hi), b = _mm256_unpackhi_epi32(lo, hi);
    v[0] = _mm256_unpacklo_epi64(a, ks);
    v[1] = _mm256_unpackhi_epi64(a, ks);
    v[2] = _mm256_unpacklo_epi64(b, ks);
    v[3] = _mm256_unpackhi_epi64(b, ks);
}
//! The blocks of registers v[0..3] back into words of lanes 0 .. 7, in order.
__attribute__((target("avx2"))) CHILDTUNE_ALWAYS_INLINE void ars_lanes_avx2(const __m256i* v, __m256i (&w)[4]) {
    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpacklo_epi32(v[2], v[3]);
    const __m256i t2 = _mm256_unpackhi_epi32(v[0], v[1]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    w[0] = _mm256_unpacklo_epi64(t0, t1);
    w[1] = _mm256_unpackhi_epi64(t0, t1);
    w[2] = _mm256_unpacklo_epi64(t2, t3);
    w[3] = _mm256_unpackhi_epi64(t2, t3);
}
//! Two sets of eight lanes (lo0/hi0 -> w0, lo1/hi1 -> w1) with VAES: eight
//! registers of two blocks each in flight.
__attribute__((target("avx2,aes,vaes"))) inline void ars_words_vaes_avx2(const philox_keep_params& p, __m256i lo0, __m256i hi0,
                                                                         __m256i lo1, __m256i hi1, __m256i (&w0)[4],
                                                                         __m256i (&w1)[4]) {
    __m256i v[8];
    ars_blocks_avx2(p, lo0, hi0, v);
    ars_blocks_avx2(p, lo1, hi1, v + 4);
    const __m256i weyl = _mm256_set_epi64x(static_cast<long long>(ars_weyl_hi), static_cast<long long>(ars_weyl_lo),
                                           static_cast<long long>(ars_weyl_hi), static_cast<long long>(ars_weyl_lo));
    __m256i k = _mm256_setr_epi32(static_cast<int>(p.k0), static_cast<int>(p.k1), 0, 0, static_cast<int>(p.k0),
                                  static_cast<int>(p.k1), 0, 0);
#pragma GCC unroll 16
    for (auto& x : v) x = _mm256_xor_si256(x, k);
#pragma GCC unroll 6
    for (int r = 1; r < 7; ++r) {
        k = _mm256_add_epi64(k, weyl);
#pragma GCC unroll 16
        for (auto& x : v) x = _mm256_aesenc_epi128(x, k);
    }
    k = _mm256_add_epi64(k, weyl);
#pragma GCC unroll 16
    for (auto& x : v) x = _mm256_aesenclast_epi128(x, k);
    ars_lanes_avx2(v, w0);
    ars_lanes_avx2(v + 4, w1);
}
//! The same with AES-NI, one block per instruction (CPUs without VAES).
__attribute__((target("avx2,aes"))) inline void ars_words_aesni_avx2(const philox_keep_params& p, __m256i lo0, __m256i hi0,
                                                                     __m256i lo1, __m256i hi1, __m256i (&w0)[4],
                                                                     __m256i (&w1)[4]) {
    __m256i v[8];
    ars_blocks_avx2(p, lo0, hi0, v);
    ars_blocks_avx2(p, lo1, hi1, v + 4);
    __m128i x[16];
    for (int j = 0; j < 8; ++j) {
        x[2 * j] = _mm256_castsi256_si128(v[j]);
        x[2 * j + 1] = _mm256_extracti128_si256(v[j], 1);
    }
    ars7_aesni(p, x);
    for (int j = 0; j < 8; ++j) v[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(x[2 * j]), x[2 * j + 1], 1);
    ars_lanes_avx2(v, w0);
    ars_lanes_avx2(v + 4, w1);
}
//! Sixteen lanes' words on the path `path`.
__attribute__((target("avx2"))) inline void ars_words_avx2(const philox_keep_params& p, aes_path path, __m256i lo0, __m256i hi0,
                                                           __m256i lo1, __m256i hi1, __m256i (&w0)[4], __m256i (&w1)[4]) {
    if (path == aes_path::vaes) return ars_words_vaes_avx2(p, lo0, hi0, lo1, hi1, w0, w1);
    if (path == aes_path::aesni) return ars_words_aesni_avx2(p, lo0, hi0, lo1, hi1, w0, w1);
    alignas(32) std::uint32_t l[16], h[16], out[4][16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), lo0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(l + 8), lo1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(h), hi0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(h + 8), hi1);
    ars_words_scalar(p, l, h, 16, out);
    for (unsigned k = 0; k < 4; ++k) {
        w0[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(out[k]));
        w1[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(out[k] + 8));
    }
}

#endif

} // namespace childtune::detail
