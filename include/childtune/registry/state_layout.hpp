#pragma once
//! \file
//! The compact Child-Tuning_D state layout, as a storage policy the registry
//! chooses per tensor and every kernel pass reads (exec/kernel.hpp).
//!
//! Under a fixed mask that multiplies the gradient (the reference), a masked-out
//! element never sees a gradient, so its moments stay exactly zero for the whole
//! run; storing them is waste (8 of the 28 bytes per fp32 AdamW parameter are
//! zeros for 1 - p_D of the parameters). The compact layout stores the kept
//! elements' state contiguously in mask order; `kept_before[w]` counts the kept
//! elements before 64-element word w. Which rules and options keep masked
//! moments at zero is the rule's to say (`compact_state_exact`).
//!
//! The layout is laid out for one mask: it is identified by the words' address
//! and a hash of their bits, and a step under any other mask is refused.

#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/mask/any_mask_view.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace childtune::detail {

//! Kept elements before each 64-element word of a mask over n elements, and the
//! total as the last entry.
inline std::vector<std::uint32_t> kept_before(const std::uint64_t* words, std::size_t n) {
    const std::size_t count = n / 64 + (n % 64 != 0 ? 1 : 0);
    if (n > std::size_t{0xFFFFFFFFu}) fail("compact state: a tensor of " + std::to_string(n) + " elements is too large");
    std::vector<std::uint32_t> prefix(count + 1, 0);
    for (std::size_t w = 0; w < count; ++w) prefix[w + 1] = prefix[w] + static_cast<std::uint32_t>(std::popcount(words[w]));
    return prefix;
}

inline std::uint64_t mask_words_hash(const std::uint64_t* words, std::size_t n) {
    checksum64 h;
    h.update(words, (n / 64 + (n % 64 != 0 ? 1 : 0)) * sizeof(std::uint64_t));
    return h.value();
}

//! The packed words of a view that covers a whole tensor of n elements with a
//! fixed mask (what the compact layout needs), else null.
inline const std::uint64_t* whole_fixed_words(const any_mask_view& v, std::size_t n) {
    const auto* f = std::get_if<fixed_view>(&v.get());
    if (!f || f->offset() != 0 || f->mask_size() != n) return nullptr;
    return f->words();
}

//! Whether `v` is the mask a compact layout (laid out for `words`/`hash`) was
//! made for: the same words, or words of the same bits.
inline bool same_compact_mask(const any_mask_view& v, std::size_t n, const std::uint64_t* words, std::uint64_t hash) {
    const std::uint64_t* w = whole_fixed_words(v, n);
    return w && (w == words || mask_words_hash(w, n) == hash);
}

//! Whether an executor keeps 8-bit blockwise state (its `supports_blockwise8`;
//! absent: no), the other storage policy (exec/quantised_state.hpp).
template <class Executor>
constexpr bool keeps_blockwise8_state() {
    if constexpr (requires { Executor::supports_blockwise8; }) return Executor::supports_blockwise8;
    else return false;
}

} // namespace childtune::detail
