#pragma once
//! \file
//! The one place that chooses an instruction set at run time.
//!
//! A CPU kernel is a type `K` with a member template `template <cpu_isa I>
//! static R run(Args...)`, written once over I (exec/detail/simd.hpp's vectors
//! are as wide as I's registers), and a `static constexpr cpu_isa max_isa`: the
//! widest instruction set it is allowed to use. `dispatch<K>(isa, args...)` runs
//! the variant for `min(isa, K::max_isa)` through an entry function compiled for
//! that instruction set (with F16C, which every AVX2 CPU has: float16 loads and
//! stores, exec/detail/half_f16c.hpp): a per-function target attribute plus `flatten`, which
//! inlines the kernel and everything it calls into the entry, so the generic
//! vector code becomes SSE2, AVX2 or AVX-512 instructions while the user's
//! translation unit keeps its ordinary flags (no `-march`). This is the shape of
//! Highway's HWY_EXPORT / HWY_DYNAMIC_DISPATCH, with templates instead of
//! re-included source.
//!
//! The scalar variant is the definition the vector variants must reproduce bit
//! for bit. On x86-64 every CPU has SSE2, so it is compiled into the dispatch only
//! when a kernel asks for it (`scalar_entry`) or when the macro CHILDTUNE_MAX_ISA
//! is 0 (`scalar_kernels_dispatched`, exec/cpu_isa.hpp);
//! tests call `K::template run<cpu_isa::scalar>` directly to compare.

#include <childtune/config.hpp>
#include <childtune/exec/cpu_isa.hpp>

#include <utility>

namespace childtune::detail {

//! Whether kernel K compiles its scalar variant into dispatch().
template <class K>
constexpr bool dispatches_scalar() {
    if constexpr (scalar_kernels_dispatched) return true;
    else if constexpr (requires { K::scalar_entry; }) return K::scalar_entry;
    else return false;
}

#if CHILDTUNE_HAS_SSE2
template <class K, class... Args>
decltype(auto) run_sse2(Args... args) {
    return K::template run<cpu_isa::sse2>(args...);
}
#endif
#if CHILDTUNE_HAS_AVX2_DISPATCH
template <class K, class... Args>
__attribute__((target("avx2,f16c"), flatten)) decltype(auto) run_avx2(Args... args) {
    return K::template run<cpu_isa::avx2>(args...);
}
// AVX-512 implies FMA, and GCC's default -ffp-contract=fast (GNU dialects) would
// fuse `a*b + c` into one rounding there, which the scalar definition does not
// do: the AVX-512 entry turns contraction off for everything inlined into it.
// clang contracts only within one source expression (its default `on`), and the
// vector operators (exec/detail/simd.hpp) are one operation per expression.
#if defined(__clang__)
#define CHILDTUNE_DETAIL_NO_CONTRACTION
#else
#define CHILDTUNE_DETAIL_NO_CONTRACTION optimize("fp-contract=off"),
#endif
template <class K, class... Args>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,f16c"), CHILDTUNE_DETAIL_NO_CONTRACTION flatten))
decltype(auto) run_avx512(Args... args) {
    return K::template run<cpu_isa::avx512>(args...);
}
#endif

//! Runs kernel K's variant for `isa` (capped at K::max_isa; the CPU must support
//! `isa`, see cpu_kernel_isa() in exec/cpu_isa.hpp).
template <class K, class... Args>
decltype(auto) dispatch(cpu_isa isa, Args... args) {
    if (isa > K::max_isa) isa = K::max_isa;
#if CHILDTUNE_HAS_AVX2_DISPATCH
    if constexpr (K::max_isa >= cpu_isa::avx512)
        if (isa == cpu_isa::avx512) return run_avx512<K>(args...);
    if constexpr (K::max_isa >= cpu_isa::avx2)
        if (isa == cpu_isa::avx2) return run_avx2<K>(args...);
#endif
    if constexpr (dispatches_scalar<K>())
        if (isa == cpu_isa::scalar) return K::template run<cpu_isa::scalar>(args...);
#if CHILDTUNE_HAS_SSE2
    return run_sse2<K>(args...);
#else
    return K::template run<cpu_isa::scalar>(args...);
#endif
}

} // namespace childtune::detail
