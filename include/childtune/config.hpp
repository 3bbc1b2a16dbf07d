#pragma once
//! \file
//! Build configuration shared by every childtune header: version, the host/device
//! annotation used by element-wise code, and feature detection.

//! Major version of the headers (the CMake package's version).
#define CHILDTUNE_VERSION_MAJOR 0
//! Minor version.
#define CHILDTUNE_VERSION_MINOR 1
//! Patch version.
#define CHILDTUNE_VERSION_PATCH 0

//! Marks functions that must run both on the host and inside CUDA/HIP kernels.
//! Without nvcc/hipcc it expands to nothing, so plain g++/clang never see
//! `__host__`/`__device__` (DESIGN.md §4).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define CHILDTUNE_HD __host__ __device__
#else
#define CHILDTUNE_HD
#endif

//! Forces inlining of the small SIMD helpers; a call per vector op would be slower
//! than the memory traffic the fused step is designed around.
#if defined(__GNUC__) || defined(__clang__)
#define CHILDTUNE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CHILDTUNE_ALWAYS_INLINE inline
#endif

//! Keeps a rarely taken path out of the flattened step kernels that call it.
#if defined(__GNUC__) || defined(__clang__)
#define CHILDTUNE_NOINLINE __attribute__((noinline))
#else
#define CHILDTUNE_NOINLINE
#endif

//! Host/device code that must be inlined into its caller. The step kernels rely
//! on it: a wide vector passed by value between a function compiled for AVX2 and
//! one compiled without it would be passed differently on each side, so update
//! rules mark `apply` with it (and declare `inline_apply`; see concepts.hpp).
#define CHILDTUNE_HD_INLINE CHILDTUNE_HD CHILDTUNE_ALWAYS_INLINE

//! 1 when the CPU kernels use SSE2 vectors (part of every x86-64 target, so no
//! user flag is needed); 0 on other architectures, which use the portable scalar
//! kernel. Define it to 0 before including childtune to force the scalar kernel.
//! Translation units compiled by nvcc get the scalar kernel too: nvcc's front end
//! rejects the casts between GCC vector types that the SSE2/AVX2 code is made of.
//! Results are the same bits; only the speed of CPU steps in such a file differs.
#ifndef CHILDTUNE_HAS_SSE2
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__CUDACC__)
#define CHILDTUNE_HAS_SSE2 1
#else
#define CHILDTUNE_HAS_SSE2 0
#endif
#endif

//! 1 when the CPU kernels may pick AVX2 code at run time (GCC/clang on x86-64).
//! The AVX2 code is compiled through per-function target attributes, so users
//! keep their ordinary flags (no `-march`).
#ifndef CHILDTUNE_HAS_AVX2_DISPATCH
#if CHILDTUNE_HAS_SSE2 && (defined(__GNUC__) || defined(__clang__))
#define CHILDTUNE_HAS_AVX2_DISPATCH 1
#else
#define CHILDTUNE_HAS_AVX2_DISPATCH 0
#endif
#endif

//! The widest instruction set the CPU kernels may use, fixed at compile time:
//! 0 scalar, 1 SSE2, 2 AVX2, 3 AVX-512 (the default: no cap). 0 also compiles
//! the scalar kernels into the run-time dispatch, which otherwise picks SSE2 as
//! the narrowest on x86-64. exec/cpu_isa.hpp has the run-time cap
//! (the environment variable of the same name) and says which set runs.
#ifndef CHILDTUNE_MAX_ISA
#define CHILDTUNE_MAX_ISA 3
#endif
#if CHILDTUNE_MAX_ISA < 0 || CHILDTUNE_MAX_ISA > 3
#error "CHILDTUNE_MAX_ISA must be 0 (scalar), 1 (SSE2), 2 (AVX2) or 3 (AVX-512)"
#endif

//! Headers with AVX-512 intrinsics open their code with
//! CHILDTUNE_AVX512_WARNINGS_BEGIN and close it with CHILDTUNE_AVX512_WARNINGS_END.
//! GCC 12's AVX-512 intrinsics fill their unused "undefined" operand with a
//! vector initialised from itself (`__m512i __Y = __Y;`), which its own
//! -Wmaybe-uninitialized and -Wuninitialized then report at inlined calls.
#if defined(__GNUC__) && !defined(__clang__)
#define CHILDTUNE_AVX512_WARNINGS_BEGIN                                                                                 \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")                       \
        _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
//! Closes what CHILDTUNE_AVX512_WARNINGS_BEGIN opened.
#define CHILDTUNE_AVX512_WARNINGS_END _Pragma("GCC diagnostic pop")
#else
#define CHILDTUNE_AVX512_WARNINGS_BEGIN
//! Closes what CHILDTUNE_AVX512_WARNINGS_BEGIN opened.
#define CHILDTUNE_AVX512_WARNINGS_END
#endif
