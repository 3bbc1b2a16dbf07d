#pragma once
//! \file
//! Which instruction set the CPU kernels run with in this process, and how to cap it.
//!
//! The CPU kernels come in builds of one arithmetic for SSE2, AVX2 (with F16C)
//! and AVX-512 (F, BW, DQ, VL; the 8-bit state's byte tables also use VBMI and
//! VBMI2 where the CPU has them), compiled through per-function target
//! attributes: a program built without `-march` still runs the widest set its
//! CPU has, chosen once per process. Every set gives the same bits (tests/exec
//! compares each with the scalar definition), so a cap changes only the speed.
//! Two caps exist, and the lower applies:
//!
//! - the environment variable `CHILDTUNE_MAX_ISA`: `sse2`, `avx2` or `avx512`
//!   (any case), or `1`-`3`; `scalar` or `0` where the dispatch has scalar
//!   kernels (no SSE2, or the macro below is 0). Unset or empty: no cap. It is
//!   read once, by the first CPU optimizer constructed (or the first kernel,
//!   whichever comes first); later changes to the environment do not apply.
//!   Any other value is a childtune::error from that constructor, naming it.
//! - the macro `CHILDTUNE_MAX_ISA` (0-3, config.hpp), at compile time.
//!
//! A cap above what the CPU runs picks the widest set it does run. Uses: timing
//! the AVX2 kernels on an AVX-512 machine without a second build, keeping
//! 512-bit instructions off CPUs that lower their clock for them, ruling the
//! vector kernels out when a result differs. (PyTorch's ATEN_CPU_CAPABILITY and
//! oneDNN's ONEDNN_MAX_CPU_ISA are the same kind of setting.)

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/detail/cpu_features.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

namespace childtune {

//! Instruction sets the CPU kernels come in, narrowest first.
enum class cpu_isa { scalar, sse2, avx2, avx512 };

//! "scalar", "sse2", "avx2" or "avx512".
constexpr std::string_view cpu_isa_name(cpu_isa isa) {
    switch (isa) {
    case cpu_isa::scalar: return "scalar";
    case cpu_isa::sse2: return "sse2";
    case cpu_isa::avx2: return "avx2";
    case cpu_isa::avx512: return "avx512";
    }
    return "unknown";
}

//! The instruction set `text` names (cpu_isa_name's names in any case, or
//! 0-3); throws childtune::error naming `what` and the text for anything else.
inline cpu_isa parse_cpu_isa(std::string_view what, std::string_view text) {
    std::string lower(text);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    for (int i = 0; i <= 3; ++i) {
        const auto isa = static_cast<cpu_isa>(i);
        if (lower == cpu_isa_name(isa) || lower == std::string(1, static_cast<char>('0' + i))) return isa;
    }
    detail::fail(std::string(what) + " = '" + std::string(text) +
                 "' is not an instruction set: use scalar, sse2, avx2 or avx512 (or 0-3)");
}

namespace detail {

//! The name the kernels and their tests have used since before it was public.
using childtune::cpu_isa;

//! Whether the dispatch (exec/dispatch.hpp) has scalar kernels to run: on
//! x86-64 only when the macro CHILDTUNE_MAX_ISA is 0 (a second copy of every
//! kernel costs compile time, and every x86-64 CPU runs SSE2).
inline constexpr bool scalar_kernels_dispatched = !CHILDTUNE_HAS_SSE2 || CHILDTUNE_MAX_ISA == 0;

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

//! The instruction set for the caps: the environment's text (null or empty: no
//! cap), the compile-time cap, and the widest set at or below both that
//! `supports` accepts. A pure function of its arguments, so tests can pose any
//! CPU; cpu_kernel_isa() calls it with this process's.
template <class Supports>
cpu_isa choose_cpu_isa(const char* environment, cpu_isa compile_cap, bool has_scalar_dispatch, Supports&& supports) {
    cpu_isa cap = compile_cap;
    if (environment != nullptr && *environment != '\0') {
        const cpu_isa asked = parse_cpu_isa("CHILDTUNE_MAX_ISA", environment);
        if (asked == cpu_isa::scalar && !has_scalar_dispatch)
            fail(std::string("CHILDTUNE_MAX_ISA = '") + environment +
                 "': this program has no scalar kernels in its dispatch (compile with -DCHILDTUNE_MAX_ISA=0 for them); "
                 "the narrowest set at run time is sse2");
        if (asked < cap) cap = asked;
    }
    for (int i = static_cast<int>(cap); i > 0; --i)
        if (supports(static_cast<cpu_isa>(i))) return static_cast<cpu_isa>(i);
    return cpu_isa::scalar;
}

} // namespace detail

//! The instruction set the CPU kernels run with in this process (the widest the
//! CPU has, under the caps of this file's comment). The first call reads the
//! environment and throws childtune::error for a malformed CHILDTUNE_MAX_ISA
//! (so does every later call until it is fixed); the CPU optimizers call it
//! when they are constructed.
inline cpu_isa cpu_kernel_isa() {
    static const cpu_isa chosen =
        detail::choose_cpu_isa(std::getenv("CHILDTUNE_MAX_ISA"), static_cast<cpu_isa>(CHILDTUNE_MAX_ISA),
                               detail::scalar_kernels_dispatched, [](cpu_isa isa) { return detail::cpu_supports(isa); });
    return chosen;
}

namespace detail {
//! The kernels' choice, as the dispatch asks for it (cpu_kernel_isa()).
inline cpu_isa best_cpu_isa() { return cpu_kernel_isa(); }
} // namespace detail

} // namespace childtune
