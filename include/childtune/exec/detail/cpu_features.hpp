#pragma once
//! \file
//! Which x86 vector extensions this CPU offers, detected once at run time.
//! exec/cpu_isa.hpp turns them into the instruction set the kernels use.

#include <childtune/config.hpp>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <cpuid.h>
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_AVX2_DISPATCH
//! F16C (CPUID leaf 1, ECX bit 29): clang 14's __builtin_cpu_supports does not know it.
inline bool cpu_has_f16c() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}
//! AVX2 with F16C: what the AVX2 entries are compiled for (every AVX2 CPU has
//! F16C; the float16 loads and stores use it, exec/detail/half_f16c.hpp).
inline bool cpu_has_avx2() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0 && cpu_has_f16c();
    }();
    return has;
}
//! F, BW, DQ and VL (and F16C): what the AVX-512 kernels are compiled for.
inline bool cpu_has_avx512() {
    static const bool has = [] {
        __builtin_cpu_init();
        return cpu_has_f16c() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }();
    return has;
}
//! AVX2 with VAES (CPUID leaf 7, ECX bit 9) and AES-NI: AES rounds on two
//! blocks per ymm instruction (four per zmm one where AVX-512 is there too),
//! which mask definition 4's generators use (random/detail/ars_x86.hpp).
inline bool cpu_has_vaes() {
    static const bool has = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool aes = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 25)) != 0;
        return cpu_has_avx2() && aes && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 9)) != 0;
    }();
    return has;
}
//! AVX-512 with VBMI (byte permutes across a register): the 8-bit state's
//! byte-table decoder (numeric/detail/blockwise8_vbmi.hpp) needs it on top.
inline bool cpu_has_avx512vbmi() {
    static const bool has = [] {
        __builtin_cpu_init();
        return cpu_has_avx512() && __builtin_cpu_supports("avx512vbmi");
    }();
    return has;
}
//! AVX-512 with VBMI and VBMI2 (16-bit funnel shifts): the 8-bit state's
//! gather-free encoder (numeric/detail/blockwise8_vbmi.hpp). Every CPU with
//! VBMI has VBMI2 except Cannon Lake, which then keeps the gather encoder.
inline bool cpu_has_avx512vbmi2() {
    static const bool has = [] {
        __builtin_cpu_init();
        return cpu_has_avx512vbmi() && __builtin_cpu_supports("avx512vbmi2");
    }();
    return has;
}
#endif

} // namespace childtune::detail
