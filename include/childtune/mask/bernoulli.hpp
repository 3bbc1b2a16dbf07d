#pragma once
//! \file
//! Child-Tuning_F (task-free) mask: every step, each gradient element is kept
//! with probability p and kept elements are scaled by 1/p (Xu et al. 2021, §2.1,
//! eq. 5), so the expected gradient equals the dense one.
//!
//! The decision for element i of a tensor at step t is a pure function of
//! (seed, t, tensor key, i) through a counter-based generator, by one of four
//! recorded definitions (the policy's `version`; state files store it). Versions
//! 1-3 draw Philox4x32-10 blocks, version 4 (the default) ARS-7 blocks:
//!
//!     out(b) = philox4x32(counter = {b lo32, b hi32, tensor_key, t},
//!                         key     = {seed lo32, seed hi32})
//!
//! Version 1 (childtune 0.1; one 32-bit draw per decision, 4 per Philox call):
//!
//!     block = 16 * (i / 64) + i % 16,   word = (i % 64) / 16
//!     keep  = out(block).w[word] < round(p * 2^32)     (always true when p == 1)
//!
//! Version 2 (the default before version 3; one 16-bit draw per decision, 8 per Philox call):
//!
//!     block = 16 * (i / 128) + i % 16,  j = (i % 128) / 16,  word = j % 4,  half = j / 4
//!     u     = round(p * 2^16)                          (units of 2^-16, 1 .. 2^16)
//!     keep  = (out(block).w[word] >> 16 * half) & 0xFFFF < u   (always true when u == 2^16)
//!
//! Version 2 keeps with probability u / 2^16, the *effective* p, and kept
//! gradients are divided by it (so the expected gradient is still the dense
//! one); p must be at least 2^-16. round is to nearest, ties to even.
//!
//! Version 3 (the default before version 4; 32-bit draws as bit planes, decided lazily):
//!
//!     s = i / 256,  m = i % 16,  k = (i % 256) / 16       (element i = 256 s + m + 16 k)
//!     plane(j) = (out(4 * (16 s + m) + j / 8).w[(j % 8) / 2] >> 16 * (j % 2)) & 0xFFFF,  j = 0 .. 31
//!     draw  = sum over j of ((plane(j) >> k) & 1) << (31 - j)
//!     keep  = draw < round(p * 2^32)                      (always true when p == 1)
//!
//! Each element's draw is 32 independent bits, as in version 1 (the same
//! threshold, so p is kept to 2^-32), but the 16 elements of a lane share their
//! Philox blocks bit by bit, most significant first. A comparison is decided at
//! the first bit where the draw and the threshold differ, so the first block
//! (8 bits of 16 draws) decides a lane with probability (1 - 2^-8)^16 ~ 0.94,
//! and the next blocks are computed only for the lanes still tied: about 1.07
//! Philox calls per 16 decisions instead of 2 (version 2) or 4 (version 1).
//!
//! Version 4 (the default; version 3's lazy 32-bit draws, with planes of
//! consecutive elements, drawn by ARS-7 of random/ars.hpp):
//!
//!     arsout(b) = ars4x32<7>(counter = {b lo32, b hi32, tensor_key, t},
//!                            key     = {seed lo32, seed hi32, 0, 0})
//!     s = i / 256,  l = (i % 256) / 32,  b = i % 32       (element i = 256 s + 32 l + b)
//!     plane(j) = (arsout(4 * (16 s + 8 * ((j % 8) / 4) + l) + j / 8).w[j % 4] >> b) & 1,  j = 0 .. 31
//!     draw  = sum over j of plane(j) << (31 - j)
//!     keep  = draw < round(p * 2^32)                      (always true when p == 1)
//!
//! A plane word's bits are 32 consecutive elements, so eight SIMD lanes of
//! words compared with the threshold are the keep words themselves (version 3
//! transposes 16 x 16 bits per super-group), and an AES round is one x86
//! instruction (AES-NI; VAES: two or four blocks at once) where Philox's round
//! is a dozen: the AVX2 draws cost about half of version 3's, and
//! Child-Tuning_F's step comes within a few per cent of the dense one
//! (docs/benchmarks.md). Elsewhere (CUDA, Thrust, CPUs without AES-NI) the
//! same rounds run from tables. A GPU thread steps eight consecutive elements
//! of one lane (octet_stride()), two blocks for the eight.
//!
//! Each group of 64 (version 2: 128; versions 3 and 4: 256) elements uses 16 generator
//! blocks (versions 3 and 4: at least), one per SIMD lane, so one output word (half,
//! plane bit) across the lanes gives 16 consecutive decisions (on a GPU: a
//! half-warp reads 16 consecutive elements). Nothing is
//! stored; the same model gives the same mask on every backend, thread count,
//! shard layout and rank.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/random/detail/ars_x86.hpp>
#include <childtune/random/detail/lane_planes.hpp>
#include <childtune/random/detail/philox_x86.hpp>
#include <childtune/random/philox.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace childtune {

//! A stable 32-bit tensor key from a tensor name (FNV-1a), so masks do not depend
//! on registration order or on the process.
constexpr std::uint32_t stable_tensor_key(std::string_view name) {
    std::uint32_t h = 0x811C9DC5u;
    for (char c : name) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x01000193u;
    }
    return h;
}

//! Keep decisions of one tensor at one step; cheap to copy, usable in kernels.
class bernoulli_view {
public:
    //! Not known to be dense at compile time (p = 1 keeps everything at run time).
    static constexpr bool is_dense = false;

    bernoulli_view() = default;
    //! The decisions of Child-Tuning_F for one tensor at one step: keep probability
    //! `p`, generator key `seed`, the tensor's key, the step (counter word 3), the
    //! index of the view's first element in the whole tensor and the definition
    //! `version` (1, 2, 3 or 4, see above; an unknown one reads as 3).
    bernoulli_view(double p, std::uint64_t seed, std::uint32_t tensor_key, std::uint64_t step, std::uint64_t offset,
                   std::uint32_t version = 3)
        : p_(p), offset_(offset), all_(p >= 1.0), isa_(detail::best_philox_isa()) {
        std::uint32_t threshold;
        if (version != 2) {
            const double scaled = std::nearbyint(p * 4294967296.0);
            threshold = static_cast<std::uint32_t>(scaled < 1.0 ? 1.0 : (scaled > 4294967295.0 ? 4294967295.0 : scaled));
        } else {
            const double units = std::nearbyint(p * 65536.0);
            const double clamped = !(units >= 1.0) ? 1.0 : (units > 65536.0 ? 65536.0 : units); // NaN: 1
            p_ = clamped / 65536.0;
            all_ = clamped == 65536.0;
            threshold = static_cast<std::uint32_t>(clamped);
        }
        params_ = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), tensor_key,
                   static_cast<std::uint32_t>(step), threshold, version >= 1 && version <= 4 ? version : 3u,
                   resolved(detail::aes_path::automatic)};
    }

    //! Whether element i (relative to the view's offset) is kept.
    CHILDTUNE_HD bool keep(std::uint64_t i) const {
        if (all_) return true;
        const std::uint64_t e = i + offset_;
        if (params_.version == 1) {
            const auto out = block(16 * (e >> 6) + (e & 15));
            return out.w[(e >> 4) & 3] < params_.threshold;
        }
        if (params_.version == 4) { // byte by byte, most significant first, until it differs
            const unsigned lane = static_cast<unsigned>(e >> 5) & 7, bit = static_cast<unsigned>(e & 31);
            for (unsigned level = 0; level < 4; ++level) {
                const auto first = block(detail::lane_block(e >> 8, lane, 0, level));
                const auto second = block(detail::lane_block(e >> 8, lane, 1, level));
                unsigned draw = 0;
                for (unsigned j = 0; j < 8; ++j) draw = draw << 1 | (((j < 4 ? first.w[j] : second.w[j - 4]) >> bit) & 1u);
                const unsigned limit = (params_.threshold >> (24 - 8 * level)) & 0xFFu;
                if (draw != limit) return draw < limit;
            }
            return false;
        }
        if (params_.version == 3) { // byte by byte, most significant first, until it differs
            const unsigned k = static_cast<unsigned>(e >> 4) & 15;
            for (unsigned level = 0; level < 4; ++level) {
                const auto out = block(detail::plane_block(e >> 8, static_cast<unsigned>(e & 15), level));
                unsigned draw = 0;
                for (unsigned j = 0; j < 8; ++j) draw = draw << 1 | ((out.w[j / 2] >> (16 * (j % 2) + k)) & 1u);
                const unsigned limit = (params_.threshold >> (24 - 8 * level)) & 0xFFu;
                if (draw != limit) return draw < limit;
            }
            return false;
        }
        const auto out = block(16 * (e >> 7) + (e & 15));
        const unsigned j = static_cast<unsigned>(e >> 4) & 7;
        return ((out.w[j & 3] >> (16 * (j >> 2))) & 0xFFFFu) < params_.threshold;
    }
    //! How far apart the eight elements of keep_octet are: 16 (versions 1-3),
    //! or 1 (version 4, whose lanes are consecutive elements).
    CHILDTUNE_HD std::uint64_t octet_stride() const { return detail::lanes_are_consecutive(params_.version) ? 1 : 16; }
    //! Decisions of elements i, i + d, ..., i + 7d (d = octet_stride()) as bits
    //! 0..7 (the eight a thread of the Thrust adapter steps). When element i +
    //! offset is among the first 16 of its 128-element group they are the eight
    //! 16-bit draws of one Philox block (version 2), the draws of two blocks
    //! (version 1) or eight draws of one lane (version 3: one block, rarely
    //! more), so one or two blocks serve all eight instead of eight blocks.
    //! Version 4: eight consecutive elements of one lane, two blocks (rarely more).
    CHILDTUNE_HD unsigned keep_octet(std::uint64_t i) const {
        if (all_) return 0xFFu;
        const std::uint64_t e = i + offset_;
        unsigned bits = 0;
        if (detail::lanes_are_consecutive(params_.version)) {
            if ((e & 31) <= 24) { // all eight in lane (e % 256) / 32
                const unsigned lane = static_cast<unsigned>(e >> 5) & 7;
                detail::lane_compare c;
                for (unsigned level = 0; level < 4 && (c.tied >> (e & 31) & 0xFFu) != 0; ++level)
                    detail::compare_lane_planes(c, block(detail::lane_block(e >> 8, lane, 0, level)),
                                                block(detail::lane_block(e >> 8, lane, 1, level)), params_.threshold, level);
                return (c.below >> (e & 31)) & 0xFFu;
            }
            for (unsigned k = 0; k < 8; ++k) bits |= static_cast<unsigned>(keep(i + k)) << k;
            return bits;
        }
        if ((e & 127) < 16) {
            if (detail::keeps_by_planes(params_.version)) { // (version 3) elements e + 16k' are draws k0 .. k0 + 7 of one lane
                detail::plane_compare c;
                for (unsigned level = 0; level < 4 && c.tied != 0; ++level)
                    detail::compare_planes(c, block(detail::plane_block(e >> 8, static_cast<unsigned>(e & 15), level)),
                                           params_.threshold, level);
                return (c.below >> (e & 128 ? 8 : 0)) & 0xFFu;
            }
            if (params_.version == 1) {
                const auto low = block(16 * (e >> 6) + (e & 15)), high = block(16 * ((e >> 6) + 1) + (e & 15));
                for (unsigned k = 0; k < 4; ++k) {
                    bits |= static_cast<unsigned>(low.w[k] < params_.threshold) << k;
                    bits |= static_cast<unsigned>(high.w[k] < params_.threshold) << (k + 4);
                }
                return bits;
            }
            const auto out = block(16 * (e >> 7) + (e & 15));
            for (unsigned k = 0; k < 8; ++k)
                bits |= static_cast<unsigned>(((out.w[k & 3] >> (16 * (k >> 2))) & 0xFFFFu) < params_.threshold) << k;
            return bits;
        }
        for (unsigned k = 0; k < 8; ++k) bits |= static_cast<unsigned>(keep(i + 16 * k)) << k;
        return bits;
    }
    //! Keep bits of elements [first, first + 64), bit j for element first + j (CPU path).
    std::uint64_t bits64(std::uint64_t first) const {
        if (all_) return ~std::uint64_t{0};
        const std::uint64_t e = first + offset_, group = e >> 6;
        const unsigned shift = static_cast<unsigned>(e & 63);
        const std::uint64_t word = detail::philox_keep_word(isa_, params_, group);
        if (shift == 0) return word;
        return (word >> shift) | (detail::philox_keep_word(isa_, params_, group + 1) << (64 - shift));
    }
    //! Keep words of elements first, first + 64, ... (`count` of them), as
    //! bits64 gives them: one dispatch per run of up to 64 words, at any offset.
    void words(std::uint64_t first, std::size_t count, std::uint64_t* out) const {
        const std::uint64_t e = first + offset_;
        if (all_) {
            for (std::size_t k = 0; k < count; ++k) out[k] = ~std::uint64_t{0};
            return;
        }
        const unsigned shift = static_cast<unsigned>(e % 64);
        if (shift == 0) {
            detail::philox_keep_words(isa_, params_, e / 64, count, out);
            return;
        }
        // Not on a word boundary (a shard's slice): each output word joins two
        // generated words; generate each once, in runs.
        std::uint64_t run[65];
        for (std::size_t k = 0; k < count; k += 64) {
            const std::size_t n = count - k < 64 ? count - k : 64;
            detail::philox_keep_words(isa_, params_, e / 64 + k, n + 1, run);
            for (std::size_t j = 0; j < n; ++j) out[k + j] = (run[j] >> shift) | (run[j + 1] << (64 - shift));
        }
    }
    //! Probability of keeping an element (version 2: p rounded to 2^-16 units);
    //! kept gradients are divided by it.
    CHILDTUNE_HD double keep_probability() const { return p_; }
    //! The mask definition of these decisions (1, 2, 3 or 4).
    CHILDTUNE_HD std::uint32_t version() const { return params_.version; }
    //! The index of the view's first element in the whole tensor.
    CHILDTUNE_HD std::uint64_t offset() const { return offset_; }
    //! The keep stream's parameters: CPU executors draw keep words from them
    //! inside the step's pass (exec/kernel.hpp), bits64() and words() here.
    const detail::philox_keep_params& keep_params() const { return params_; }
    //! Chooses the generator implementation (tests use it to compare them).
    void set_isa(detail::philox_isa isa) { isa_ = isa; }
    //! Chooses the AES instructions of version 4's x86 generators (tests use it
    //! to compare them; all give the same bits).
    void set_aes_path(detail::aes_path path) { params_.aes = resolved(path); }

private:
    //! `automatic` as the path this CPU takes, resolved once per view rather
    //! than per super-group in the generators' passes.
    static detail::aes_path resolved(detail::aes_path path) {
#if CHILDTUNE_HAS_SSE2
        return detail::resolve_aes_path(path, true); // (the SSE2 passes read vaes as AES-NI)
#else
        return path;
#endif
    }
    CHILDTUNE_HD philox_block block(std::uint64_t b) const {
        return detail::keep_stream_block(params_.k0, params_.k1, params_.tensor_key, params_.step, params_.version, b);
    }

    detail::philox_keep_params params_{};
    double p_ = 1.0;
    std::uint64_t offset_ = 0;
    bool all_ = true;
    detail::philox_isa isa_ = detail::philox_isa::scalar;
};

//! The mask definition new Bernoulli policies use (see above; version 4 makes
//! version 3's fifteen decisions per block, with version 1's 32-bit p, from
//! ARS-7 blocks that cost x86 CPUs about half as much as Philox's).
inline constexpr std::uint32_t bernoulli_default_version = 4;

//! Child-Tuning_F policy: hyperparameters only (keep probability, seed and the
//! recorded definition version).
struct bernoulli {
    double p = 1.0;            //!< keep probability p_F in [min_p_of(version), 1]; the paper uses 0.1–0.3
    std::uint64_t seed = 0;    //!< the generator's key (Philox's or ARS-7's, by version)
    //! The decision function (1: 0.1's 32-bit draws; 2: 16-bit draws, p in units
    //! of 2^-16; 3: 32-bit draws as bit planes; 4: version 3 drawn by ARS-7).
    //! State files record it; files without it are version 1.
    std::uint32_t version = bernoulli_default_version;

    //! The smallest p the 32-bit keep threshold of versions 1, 3 and 4 represents
    //! (threshold 1). Below it the threshold would be clamped to 1 while kept
    //! gradients are still divided by p: the expected gradient would grow by
    //! 2^-32/p, and in float state 1/p overflows to Inf for p < ~3e-39.
    static constexpr double min_p = 1.0 / 4294967296.0;
    //! The smallest p of version 2: one unit of its 16-bit threshold.
    static constexpr double min_p_v2 = 1.0 / 65536.0;
    //! The smallest p definition `v` accepts.
    static constexpr double min_p_of(std::uint32_t v) { return v == 2 ? min_p_v2 : min_p; }

    //! What elements are kept with and kept gradients divided by: p itself for
    //! versions 1, 3 and 4, round(p * 2^16) / 2^16 for version 2.
    double effective_p() const { return version != 2 || p >= 1.0 ? p : std::nearbyint(p * 65536.0) / 65536.0; }

    //! Throws childtune::error unless version is 1, 2, 3 or 4 and min_p_of(version) <= p <= 1.
    void validate() const {
        if (version < 1 || version > 4)
            detail::fail("bernoulli mask: definition version = " + std::to_string(version) + " is not 1, 2, 3 or 4");
        if (!(p > 0.0 && p <= 1.0))
            detail::fail("bernoulli mask: keep probability p = " + detail::format_number(p) + " is outside (0, 1]");
        if (p < min_p_of(version))
            detail::fail("bernoulli mask: keep probability p = " + detail::format_number(p) +
                         (version != 2 ? " is below 2^-32, the smallest the 32-bit keep threshold represents"
                                       : " is below 2^-16, the smallest the 16-bit keep threshold of version 2 "
                                         "represents (versions 1, 3 and 4 go down to 2^-32)"));
    }
    //! Decisions for the tensor with key `tensor_key` at step `step`; `offset` is
    //! the index of the view's first element in the whole tensor (for shards).
    bernoulli_view view(std::uint32_t tensor_key, std::uint64_t step, std::uint64_t offset = 0) const {
        return {p, seed, tensor_key, step, offset, version};
    }
    //! The mask_policy form: decisions of tensor `t` (by its key, at its offset).
    bernoulli_view view(const tensor_info& t, std::uint64_t step) const { return view(t.key, step, t.offset); }
    //! Equal when p, seed and version are.
    friend bool operator==(const bernoulli&, const bernoulli&) = default;
};

} // namespace childtune
