#pragma once
//! \file
//! Vectorised Philox4x32-10 keep bits for the CPU step (x86-64).
//!
//! A Child-Tuning_F step needs one Bernoulli decision per parameter; a scalar
//! generator costs more than the whole memory-bound update, so the CPU computes
//! the 64 decisions of an element group at once: 16 Philox blocks, one per SIMD
//! lane, with SSE2 (part of every x86-64 target), or AVX2 / AVX-512 picked at run
//! time through per-function target attributes, so users need no `-march`.
//! This header is the dispatch; random/detail/philox_keep.hpp holds the
//! definition, and philox_sse2.hpp, philox_avx2.hpp, philox_avx512.hpp the
//! generators. Every variant returns exactly the bits of the scalar definition;
//! the tests compare them.

#include <childtune/config.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/exec/dispatch.hpp>
#include <childtune/random/detail/lane_planes.hpp>
#include <childtune/random/detail/lane_planes_x86.hpp>
#include <childtune/random/detail/philox_avx2.hpp>
#include <childtune/random/detail/philox_avx512.hpp>
#include <childtune/random/detail/philox_keep.hpp>
#include <childtune/random/detail/philox_planes.hpp>
#include <childtune/random/detail/philox_sse2.hpp>

#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! Which implementation of the keep-word generator the CPU step uses: the
//! instruction sets of exec/detail/cpu_features.hpp.
using philox_isa = cpu_isa;

inline philox_isa best_philox_isa() { return best_cpu_isa(); }
inline bool philox_isa_available(philox_isa isa) { return cpu_supports(isa); }

//! The keep-word generators of one instruction set, for the kernel below to be
//! written once over: version 1's word, version 2's pair, and version 3's first
//! pass and level-1 pass with the queue entries that pass takes at a time.
template <auto Word, auto Pair, auto PlaneFirst, auto PlaneLevel, std::size_t PlaneLanes>
struct philox_generator_set {
    static constexpr auto word = Word;              //!< version 1: keep word w
    static constexpr auto pair = Pair;              //!< version 2: words 2G and 2G + 1
    static constexpr auto plane_first = PlaneFirst; //!< version 3: level 0 of super-group s
    static constexpr auto plane_level = PlaneLevel; //!< version 3: level 1 of plane_lanes queue entries
    static constexpr std::size_t plane_lanes = PlaneLanes;
};
//! Instruction set I's generators: the scalar definition unless a vector header
//! (philox_sse2.hpp, philox_avx2.hpp, philox_avx512.hpp) is compiled in. Each
//! variant is named here once; the vector ones need their own code because the
//! 32x32->64-bit multiplies and the compare-to-mask have no generic-vector form
//! that compiles to these instructions (written with GCC's vector extensions the
//! generator ran 2-4x slower under GCC 12).
template <cpu_isa I>
struct philox_generators
    : philox_generator_set<philox_keep_word_scalar, philox_keep_pair_scalar, plane_first_scalar, plane_level_scalar, 1> {};
#if CHILDTUNE_HAS_SSE2
template <>
struct philox_generators<cpu_isa::sse2>
    : philox_generator_set<philox_keep_word_sse2, philox_keep_pair_sse2, plane_first_sse2, plane_level_sse2, 16> {};
#endif
#if CHILDTUNE_HAS_AVX2_DISPATCH
template <>
struct philox_generators<cpu_isa::avx2>
    : philox_generator_set<philox_keep_word_avx2, philox_keep_pair_avx2, plane_first_avx2, plane_level_avx2, 16> {};
template <>
struct philox_generators<cpu_isa::avx512>
    : philox_generator_set<philox_keep_word_avx512, philox_keep_pair_avx512, plane_first_avx512, plane_level_avx512, 16> {};
#endif

//! Definition 4's passes on instruction set I (random/detail/lane_planes.hpp):
//! level 0 of a super-group and level 1 of `lanes` queue entries. The AVX-512
//! kernels take the AVX2 passes, whose ARS rounds run on ymm registers.
template <auto First, auto Level, std::size_t Lanes>
struct lane_generator_set {
    static constexpr auto first = First;
    static constexpr auto level = Level;
    static constexpr std::size_t lanes = Lanes;
};
template <cpu_isa I>
struct lane_generators : lane_generator_set<lane_first_scalar, lane_level_scalar, 1> {};
#if CHILDTUNE_HAS_SSE2
template <>
struct lane_generators<cpu_isa::sse2> : lane_generator_set<lane_first_sse2, lane_level_sse2, 16> {};
#endif
#if CHILDTUNE_HAS_AVX2_DISPATCH
template <>
struct lane_generators<cpu_isa::avx2> : lane_generator_set<lane_first_avx2, lane_level_avx2, 16> {};
template <>
struct lane_generators<cpu_isa::avx512> : lane_generator_set<lane_first_avx2, lane_level_avx2, 16> {};
#endif

//! The keep words of groups first .. first + count - 1, as a kernel for the
//! one instruction-set dispatch (exec/dispatch.hpp), over the generators of
//! each instruction set. The fused pass (exec/kernel.hpp) draws with its pieces.
struct philox_keep_words_kernel {
    static constexpr cpu_isa max_isa = cpu_isa::avx512;
    static constexpr bool scalar_entry = true;

    //! Versions 1 and 2: words `first` .. first + count - 1.
    template <cpu_isa I>
    CHILDTUNE_ALWAYS_INLINE static void batches(const philox_keep_params& p, std::uint64_t first, std::size_t count,
                                                std::uint64_t* out) {
        using G = philox_generators<I>;
        if (p.version == 1) {
            for (std::size_t k = 0; k < count; ++k) out[k] = G::word(p, first + k);
            return;
        }
        for (std::size_t k = 0; k < count;) {
            const std::uint64_t w = first + k;
            std::uint64_t two[2];
            G::pair(p, w >> 1, two);
            if ((w & 1) == 0) out[k++] = two[0];
            if (k < count) out[k++] = two[1];
        }
    }

    //! Versions 3 and 4 by super-groups (philox_planes.hpp, lane_planes.hpp):
    //! level 0 of super-group s into four[0..3], its tied lanes queued ...
    using first_pass = void (*)(const philox_keep_params&, std::uint64_t, std::uint64_t*, plane_queue&, std::uint32_t);
    //! ... by the first pass of p's definition on instruction set I, chosen
    //! once per run of words: one version's pass inlined into another's loop
    //! (a branch per super-group) made both 10-60 % slower (register pressure).
    template <cpu_isa I>
    static first_pass first_pass_of(const philox_keep_params& p) {
        return lanes_are_consecutive(p.version) ? lane_generators<I>::first : philox_generators<I>::plane_first;
    }
    template <cpu_isa I>
    CHILDTUNE_ALWAYS_INLINE static void plane_first(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four,
                                                    plane_queue& q, std::uint32_t first_word) {
        philox_generators<I>::plane_first(p, s, four, q, first_word);
    }
    template <cpu_isa I>
    CHILDTUNE_ALWAYS_INLINE static void lane_first(const philox_keep_params& p, std::uint64_t s, std::uint64_t* four,
                                                   plane_queue& q, std::uint32_t first_word) {
        lane_generators<I>::first(p, s, four, q, first_word);
    }
    //! ... and the queue finished into the chunk's words: once per chunk, out of
    //! line (inlined into every flattened kernel it cost compile time and threw
    //! GCC 12's -Wmaybe-uninitialized off in unrelated code of the same unit).
    template <cpu_isa I>
    CHILDTUNE_NOINLINE static void plane_finish_queue(const philox_keep_params& p, plane_queue& q, std::uint64_t* words) {
        if (lanes_are_consecutive(p.version)) lane_finish<lane_generators<I>::lanes, lane_generators<I>::level>(p, q, words);
        else plane_finish<philox_generators<I>::plane_lanes, philox_generators<I>::plane_level>(p, q, words);
    }

    //! Versions 3 and 4's words out of line, for a caller that needs them once (the
    //! fused pass's first chunk): inlined, the driver and a second copy of the
    //! first pass in every flattened kernel cost 15-20 % more compile time.
    template <cpu_isa I>
    CHILDTUNE_NOINLINE static void plane_words_once(const philox_keep_params& p, std::uint64_t first, std::size_t count,
                                                    std::uint64_t* out) {
        if (lanes_are_consecutive(p.version)) plane_words<lane_first<I>, plane_finish_queue<I>>(p, first, count, out);
        else plane_words<plane_first<I>, plane_finish_queue<I>>(p, first, count, out);
    }

    template <cpu_isa I>
    static void run(const philox_keep_params* p, std::uint64_t first, std::size_t count, std::uint64_t* out) {
        if (keeps_by_planes(p->version)) plane_words_once<I>(*p, first, count, out);
        else batches<I>(*p, first, count, out);
    }
};

//! Keep words of groups first .. first + count - 1 on instruction set `isa`.
inline void philox_keep_words(philox_isa isa, const philox_keep_params& p, std::uint64_t first, std::size_t count,
                              std::uint64_t* out) {
    dispatch<philox_keep_words_kernel>(isa, &p, first, count, out);
}
inline std::uint64_t philox_keep_word(philox_isa isa, const philox_keep_params& p, std::uint64_t group) {
    std::uint64_t word;
    philox_keep_words(isa, p, group, 1, &word);
    return word;
}

} // namespace childtune::detail
