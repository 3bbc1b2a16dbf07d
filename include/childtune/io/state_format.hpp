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
#include <childtune/tensor_view.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

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

//! What precedes the groups: the step count, the mask mode and the masking options.
struct state_preamble {
    std::uint64_t steps = 0;
    mask_mode mode = dense{};
    masking_options masking{};
};

inline void write_state_preamble(binary_writer& w, std::string_view rule, const state_preamble& p) {
    w.header(optimizer_state_magic, optimizer_state_version);
    w.string(rule);
    w.value<std::uint64_t>(p.steps);
    write_mask_mode(w, p.mode);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(p.masking.target));
    w.value<std::uint8_t>(p.masking.decay_masked ? 1 : 0);
}

//! Reads the preamble of a file that must have been written for `rule`.
inline state_preamble read_state_preamble(binary_reader& r, std::string_view rule) {
    r.header(optimizer_state_magic, optimizer_state_version);
    const std::string written = r.string();
    if (written != rule)
        fail("optimizer state: written by a '" + written + "' optimizer, this one is '" + std::string(rule) + "'");
    state_preamble p;
    p.steps = r.value<std::uint64_t>();
    p.mode = read_mask_mode(r);
    const auto target = r.value<std::uint8_t>();
    if (target > 1) fail("optimizer state is corrupt: unknown mask target");
    p.masking.target = static_cast<mask_target>(target);
    p.masking.decay_masked = r.value<std::uint8_t>() != 0;
    return p;
}

//! Groups: their count, then each one's name, masked flag and option values.
//! `Group` has `name`, `masked` and `options` (of Rule).
template <class Rule, class Group>
void write_state_groups(binary_writer& w, const std::vector<Group>& groups) {
    w.value<std::uint64_t>(groups.size());
    for (const auto& g : groups) {
        w.string(g.name);
        w.value<std::uint8_t>(g.masked ? 1 : 0);
        for (double v : Rule::to_values(g.options)) w.value<double>(v);
    }
}

//! The file's groups, which must be `groups` by name and order: a copy of them
//! with the file's masked flags and (validated) options.
template <class Rule, class Group>
std::vector<Group> read_state_groups(binary_reader& r, std::vector<Group> groups) {
    const auto count = r.value<std::uint64_t>();
    if (count != groups.size())
        fail("optimizer state has " + std::to_string(count) + " groups, this optimizer has " + std::to_string(groups.size()));
    for (auto& g : groups) {
        const std::string name = r.string();
        if (name != g.name) fail("optimizer state: group '" + name + "' found where group '" + g.name + "' was expected");
        g.masked = r.value<std::uint8_t>() != 0;
        std::array<double, Rule::option_count> values;
        for (double& v : values) v = r.value<double>();
        g.options = Rule::from_values(values);
        Rule::validate(g.options, g.name);
    }
    return groups;
}

inline void check_state_tensor_count(binary_reader& r, std::size_t expected) {
    const auto count = r.value<std::uint64_t>();
    if (count != expected)
        fail("optimizer state has " + std::to_string(count) + " tensors, this optimizer has " + std::to_string(expected));
}

//! One tensor's record, up to its state arrays.
struct state_tensor_record {
    std::string name;
    std::uint64_t group = 0;
    std::uint32_t key = 0;
    dtype param_type = dtype::float32;
    std::uint64_t size = 0;
    dtype state_type = dtype::float32;
    std::uint64_t steps = 0;
    std::size_t buffers = 0;
    bool compact = false;
};

inline void write_state_tensor(binary_writer& w, const state_tensor_record& t) {
    w.string(t.name);
    w.value<std::uint64_t>(t.group);
    w.value<std::uint32_t>(t.key);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(t.param_type));
    w.value<std::uint64_t>(t.size);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(t.state_type));
    w.value<std::uint64_t>(t.steps);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(t.buffers));
    w.value<std::uint8_t>(t.compact ? 1 : 0);
}

//! Reads a tensor record that must describe the registered tensor `expected`
//! (name, group, key, types and size); returns its steps, buffers and compact flag
//! in `expected`'s copy.
inline state_tensor_record read_state_tensor(binary_reader& r, state_tensor_record expected, std::size_t max_buffers) {
    const std::string where = "optimizer state, tensor '" + expected.name + "'";
    const std::string name = r.string();
    if (name != expected.name)
        fail("optimizer state: tensor '" + name + "' found where '" + expected.name + "' was expected");
    if (r.value<std::uint64_t>() != expected.group) fail(where + ": belongs to another group");
    if (r.value<std::uint32_t>() != expected.key) fail(where + ": has another Bernoulli key");
    if (r.value<std::uint8_t>() != static_cast<std::uint8_t>(expected.param_type)) fail(where + ": has another element type");
    const auto size = r.value<std::uint64_t>();
    if (size != expected.size)
        fail(where + ": has " + std::to_string(size) + " elements, the parameter has " + std::to_string(expected.size));
    if (r.value<std::uint8_t>() != static_cast<std::uint8_t>(expected.state_type))
        fail(where + ": has another state precision");
    expected.steps = r.value<std::uint64_t>();
    expected.buffers = r.value<std::uint8_t>();
    if (expected.buffers > max_buffers) fail(where + ": is corrupt (too many state buffers)");
    expected.compact = r.value<std::uint8_t>() != 0;
    return expected;
}

} // namespace detail
} // namespace childtune
