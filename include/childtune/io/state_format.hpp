#pragma once
//! \file
//! The encodings of the optimizer state file, shared by every optimizer that
//! writes it (CPU, Thrust, LibTorch, sharded), so a checkpoint of a GPU run loads
//! into a CPU optimizer and back. io/state_file.hpp puts them together.
//!
//! Layout (io/binary.hpp encodings, checksummed): magic, version, rule name, step
//! count, the optimizer-wide mask, mask target, decay_masked, groups (name,
//! masked, the rule's option values; version 2: the group's own mask), then per
//! tensor: name, group, Bernoulli key, parameter dtype, size, state dtype, step
//! count, state buffers, layout (0 full, 1 compact; version 3: 2 and 3 are the
//! same with 8-bit blockwise storage, followed by the block size as a u32), and
//! each buffer: its elements as floats or doubles, or (8-bit) its codes as bytes
//! followed by one float scale per block (exec/quantised_state.hpp).
//!
//! A mask is a u8 kind: 0 dense; 1 Bernoulli (p, seed) of mask definition 1;
//! 2 fixed (the named bit masks); 3 (version 2) a mask policy of the user's (its
//! name and record, io/policy_io.hpp); 4 (version 3) Bernoulli (p, seed, u32
//! mask definition version, mask/bernoulli.hpp). Version 1 is what childtune 0.1
//! wrote; a file is written with the oldest version that holds its masks and
//! state, so a Bernoulli mask of definition 1 still goes out as kind 1, files
//! without a definition version (all files before version 3) load as
//! definition 1, and version 3 is written for a Bernoulli mask of definition 2
//! or later (3, 4) or for optimizers that hold 8-bit state.

#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/numeric/blockwise8.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace childtune::detail {

inline constexpr std::string_view optimizer_state_magic{"CTSTATE\1", 8};
//! Version 1: 0.1's format. Version 2: masks per group and user policies.
//! Version 3: Bernoulli masks with their definition version; 8-bit blockwise state.
inline constexpr std::uint32_t optimizer_state_version = 3;

//! Whether version 1 can hold the mask (a built-in policy of 0.1's kinds).
inline bool is_builtin_mask(const any_mask& m) {
    const auto* b = m.target<bernoulli>();
    return m.target<dense>() || (b && b->version == 1) || m.target<fixed>();
}

//! The oldest file version that holds the mask.
inline std::uint32_t state_version_of_mask(const any_mask& m) {
    if (const auto* b = m.target<bernoulli>(); b && b->version != 1) return 3;
    return is_builtin_mask(m) ? 1 : 2;
}

inline void write_mask(binary_writer& w, const any_mask& m) {
    if (m.target<dense>()) {
        w.value<std::uint8_t>(0);
    } else if (const auto* b = m.target<bernoulli>()) {
        w.value<std::uint8_t>(b->version == 1 ? 1 : 4);
        w.value<double>(b->p);
        w.value<std::uint64_t>(b->seed);
        if (b->version != 1) w.value<std::uint32_t>(b->version);
    } else if (const auto* f = m.target<fixed>()) {
        w.value<std::uint8_t>(2);
        write_mask_entries(w, f->masks);
    } else {
        w.value<std::uint8_t>(3);
        m.save(w);
    }
}

//! Reads a mask; a user policy (kind 3) is read by `current`, the policy this
//! optimizer holds at that place, which must be of the same type.
inline any_mask read_mask(binary_reader& r, std::uint32_t version, const any_mask& current) {
    const auto kind = r.value<std::uint8_t>();
    switch (kind) {
    case 0: return dense{};
    case 1:
    case 4: {
        if (kind == 4 && version < 3) fail("optimizer state is corrupt: unknown mask mode");
        bernoulli b;
        b.p = r.value<double>();
        b.seed = r.value<std::uint64_t>();
        b.version = kind == 1 ? 1 : r.value<std::uint32_t>(); // kind 1: written before definition 2 existed
        b.validate();
        return b;
    }
    case 2: return fixed{read_mask_entries(r)};
    case 3:
        if (version >= 2) return current.load(r);
        [[fallthrough]];
    default: fail("optimizer state is corrupt: unknown mask mode");
    }
}

//! What precedes the groups: the step count, the optimizer-wide mask and the
//! masking options.
struct state_preamble {
    std::uint32_t version = optimizer_state_version;
    std::uint64_t steps = 0;
    any_mask mask;
    masking_options masking{};
};

inline void write_state_preamble(binary_writer& w, std::string_view rule, const state_preamble& p) {
    w.header(optimizer_state_magic, p.version);
    w.string(rule);
    w.value<std::uint64_t>(p.steps);
    write_mask(w, p.mask);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(p.masking.target));
    w.value<std::uint8_t>(p.masking.decay_masked ? 1 : 0);
}

//! Reads the preamble of a file written for `rule` (versions 1 to 3).
inline state_preamble read_state_preamble(binary_reader& r, std::string_view rule, const any_mask& current) {
    state_preamble p;
    p.version = r.header_of_versions(optimizer_state_magic, 1, optimizer_state_version);
    const std::string written = r.string();
    if (written != rule)
        fail("optimizer state: written by a '" + written + "' optimizer, this one is '" + std::string(rule) + "'");
    p.steps = r.value<std::uint64_t>();
    p.mask = read_mask(r, p.version, current);
    const auto target = r.value<std::uint8_t>();
    if (target > 1) fail("optimizer state is corrupt: unknown mask target");
    p.masking.target = static_cast<mask_target>(target);
    p.masking.decay_masked = r.value<std::uint8_t>() != 0;
    return p;
}

//! Groups: their count, then each one's name, masked flag and option values,
//! and (version 2) its own mask. `Group` has `name`, `masked`, `options` (of
//! Rule) and `own` (std::optional<any_mask>).
template <class Rule, class Group>
void write_state_groups(binary_writer& w, std::uint32_t version, const std::vector<Group>& groups) {
    w.value<std::uint64_t>(groups.size());
    for (const auto& g : groups) {
        w.string(g.name);
        w.value<std::uint8_t>(g.masked ? 1 : 0);
        for (double v : Rule::to_values(g.options)) w.value<double>(v);
        if (version >= 2) {
            w.value<std::uint8_t>(g.own ? 1 : 0);
            if (g.own) write_mask(w, *g.own);
        }
    }
}

//! The file's groups, which must be `groups` by name and order: a copy of them
//! with the file's masked flags, (validated) options and own masks.
template <class Rule, class Group>
std::vector<Group> read_state_groups(binary_reader& r, std::uint32_t version, std::vector<Group> groups) {
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
        std::optional<any_mask> own;
        if (version >= 2 && r.value<std::uint8_t>() != 0) own = read_mask(r, version, g.own ? *g.own : any_mask{});
        g.own = std::move(own);
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
    bool quantised = false; //!< version 3: 8-bit blockwise storage
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
    w.value<std::uint8_t>(static_cast<std::uint8_t>((t.compact ? 1 : 0) | (t.quantised ? 2 : 0)));
    if (t.quantised) w.value<std::uint32_t>(static_cast<std::uint32_t>(blockwise8_block));
}

//! Reads a tensor record that must describe the registered tensor `expected`
//! (name, group, key, types and size); returns its steps, buffers and compact flag
//! in `expected`'s copy.
inline state_tensor_record read_state_tensor(binary_reader& r, state_tensor_record expected, std::size_t max_buffers,
                                             std::string_view group = {}, std::uint32_t version = 2) {
    const std::string where = "optimizer state, " + (group.empty() ? std::string() : "group '" + std::string(group) + "', ") +
                              "tensor '" + expected.name + "'";
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
    const auto layout = r.value<std::uint8_t>();
    if (layout > (version >= 3 ? 3 : 1)) fail(where + ": is corrupt (unknown state layout)");
    expected.compact = (layout & 1) != 0;
    expected.quantised = (layout & 2) != 0;
    if (expected.quantised) {
        const auto block = r.value<std::uint32_t>();
        if (block != blockwise8_block)
            fail(where + ": 8-bit state in blocks of " + std::to_string(block) + " elements; this version reads blocks of " +
                 std::to_string(blockwise8_block));
        if (expected.state_type != dtype::float32) fail(where + ": is corrupt (8-bit state that decodes to double)");
    }
    return expected;
}

//! A state buffer's elements (float or double, little-endian).
inline void write_state_buffer(binary_writer& w, dtype type, std::span<const std::byte> s) {
    if (type == dtype::float64) w.array(std::span<const double>(reinterpret_cast<const double*>(s.data()), s.size() / 8));
    else w.array(std::span<const float>(reinterpret_cast<const float*>(s.data()), s.size() / 4));
}
//! An 8-bit buffer of `codes` codes for a tensor of n elements: codes, then scales.
inline void write_quantised_state_buffer(binary_writer& w, std::span<const std::byte> s, std::size_t codes, std::size_t n) {
    w.array(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), codes));
    w.array(std::span<const float>(reinterpret_cast<const float*>(s.data() + blockwise8_scales_offset(codes)),
                                   blockwise8_blocks(n)));
}
inline std::vector<std::byte> read_quantised_state_buffer(binary_reader& r, std::size_t codes, std::size_t n) {
    std::vector<std::byte> s(blockwise8_buffer_bytes(codes, n));
    r.array_into(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(s.data()), codes));
    r.array_into(std::span<float>(reinterpret_cast<float*>(s.data() + blockwise8_scales_offset(codes)), blockwise8_blocks(n)));
    return s;
}
inline std::vector<std::byte> read_state_buffer(binary_reader& r, dtype type, std::size_t elements) {
    std::vector<std::byte> s(elements * (type == dtype::float64 ? 8 : 4));
    if (type == dtype::float64) r.array_into(std::span<double>(reinterpret_cast<double*>(s.data()), elements));
    else r.array_into(std::span<float>(reinterpret_cast<float*>(s.data()), elements));
    return s;
}

} // namespace childtune::detail
