#pragma once
//! \file
//! The pieces of the optimizer state file that every optimizer writing it shares
//! (the core's childtune::optimizer and the Thrust adapter's), so a checkpoint of
//! a GPU run loads into a CPU optimizer and back.
//!
//! Layout (io/binary.hpp encodings, checksummed): magic, version, rule name, step
//! count, mask mode (u8 index; Bernoulli p and seed; fixed: the mask entries),
//! mask target, decay_masked, groups (name, masked, the rule's option values), then
//! per tensor: name, group, Bernoulli key, parameter dtype, size, state dtype,
//! step count, state buffers, compact flag, and each buffer's elements.

#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>

#include <cstdint>
#include <string_view>
#include <variant>

namespace childtune {

//! The three ways a step masks the masked groups.
using mask_mode = std::variant<dense, bernoulli, fixed>;

namespace detail {

inline constexpr std::string_view optimizer_state_magic{"CTSTATE\1", 8};
inline constexpr std::uint32_t optimizer_state_version = 1;

inline void write_mask_mode(binary_writer& w, const mask_mode& mode) {
    w.value<std::uint8_t>(static_cast<std::uint8_t>(mode.index()));
    if (const auto* b = std::get_if<bernoulli>(&mode)) {
        w.value<double>(b->p);
        w.value<std::uint64_t>(b->seed);
    } else if (const auto* f = std::get_if<fixed>(&mode)) {
        write_mask_entries(w, f->masks);
    }
}

inline mask_mode read_mask_mode(binary_reader& r) {
    switch (r.value<std::uint8_t>()) {
    case 0: return dense{};
    case 1: {
        bernoulli b;
        b.p = r.value<double>();
        b.seed = r.value<std::uint64_t>();
        b.validate();
        return b;
    }
    case 2: return fixed{read_mask_entries(r)};
    default: fail("optimizer state is corrupt: unknown mask mode");
    }
}

} // namespace detail
} // namespace childtune
