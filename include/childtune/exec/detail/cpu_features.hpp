#pragma once
//! \file
//! Which x86 vector extensions this CPU offers, detected once at run time.
//!
//! childtune compiles its AVX2 and AVX-512 kernels through per-function target
//! attributes and picks one per call, so a binary built with plain -O2 (no
//! -march) still uses the widest vectors the machine has.

#include <childtune/config.hpp>

#if CHILDTUNE_HAS_AVX2_DISPATCH
#include <cpuid.h>
#endif

namespace childtune::detail {

//! Instruction sets the CPU kernels come in, narrowest first.
enum class cpu_isa { scalar, sse2, avx2, avx512 };

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

//! Whether this CPU can run kernels built for `isa`.
inline bool cpu_supports(cpu_isa isa) {
    switch (isa) {
    case cpu_isa::scalar: return true;
    case cpu_isa::sse2: return CHILDTUNE_HAS_SSE2 != 0;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    case cpu_isa::avx2: return cpu_has_avx2();
    case cpu_isa::avx512: return cpu_has_avx512();
#endif
    default: return false;
    }
}

//! The widest instruction set this CPU runs; CHILDTUNE_MAX_ISA (0 scalar, 1 SSE2,
//! 2 AVX2, 3 AVX-512) caps it, e.g. to compare paths.
inline cpu_isa best_cpu_isa() {
#ifndef CHILDTUNE_MAX_ISA
#define CHILDTUNE_MAX_ISA 3
#endif
    for (int i = CHILDTUNE_MAX_ISA; i > 0; --i)
        if (cpu_supports(static_cast<cpu_isa>(i))) return static_cast<cpu_isa>(i);
    return cpu_isa::scalar;
}

} // namespace childtune::detail
