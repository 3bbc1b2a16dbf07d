#pragma once
//! \file
//! Saving and loading a registry and its executor's state, once for every
//! optimizer: write_state_file() writes the format of io/state_format.hpp;
//! read_state_file() parses and checks a whole file into a staged copy of the
//! registry plus the state buffers on the host, changing nothing, so the caller
//! commits all of it or none of it.
//!
//! Files that need none of version 2's additions (masks per group, user
//! policies) are written as version 1, byte for byte what 0.1 wrote.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/integrity.hpp>
#include <childtune/io/state_format.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/state_layout.hpp>
#include <childtune/registry/step_plan.hpp>

#include <algorithm>
#include <istream>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune::detail {

//! The masks a file is written with (the registry's, or device masks brought
//! to the host by the caller).
struct file_masks {
    any_mask default_mask;
    std::vector<std::optional<any_mask>> own; //!< per group
};

template <class Rule>
file_masks masks_of(const registry<Rule>& r) {
    file_masks m{r.default_mask(), {}};
    for (const auto& g : r.groups()) m.own.push_back(g.own);
    return m;
}

template <class Rule>
std::uint32_t state_version_for(const registry<Rule>& r, const file_masks& m) {
    std::uint32_t v = state_version_of_mask(m.default_mask);
    for (const auto& t : r.tensors())
        if (t.quantised && t.buffers > 0) v = std::max<std::uint32_t>(v, 3); // 8-bit state needs version 3
    for (const auto& own : m.own)
        if (own) v = std::max<std::uint32_t>({v, 2, state_version_of_mask(*own)}); // own masks need version 2
    return v;
}

template <class Rule>
state_tensor_record state_record(const typename registry<Rule>::tensor_record& t, std::uint64_t steps,
                                 std::size_t buffers, bool compact, bool quantised = false) {
    return {t.name, t.group, t.key, t.type, t.elements, t.state_type, steps, buffers, compact, quantised};
}

//! Writes the file; `buffer(i, b)` gives state buffer b of tensor i as host bytes.
template <class Rule, class BufferBytes>
void write_state_file(std::ostream& out, const registry<Rule>& r, const file_masks& masks, BufferBytes&& buffer) {
    binary_writer w(out);
    const std::uint32_t version = state_version_for(r, masks);
    write_state_preamble(w, Rule::name, {version, r.step_count(), masks.default_mask, r.options().masking});
    auto groups = r.groups();
    for (std::size_t g = 0; g < groups.size(); ++g) groups[g].own = masks.own[g];
    write_state_groups<Rule>(w, version, groups);
    w.value<std::uint64_t>(r.tensor_count());
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        const bool quantised = t.quantised && t.buffers > 0;
        write_state_tensor(w, state_record<Rule>(t, t.steps, t.buffers, t.compact && t.buffers > 0, quantised));
        for (std::size_t b = 0; b < t.buffers; ++b) {
            const auto bytes = buffer(i, b);
            const std::span<const std::byte> s(bytes.data(), bytes.size());
            if (quantised) write_quantised_state_buffer(w, s, t.state_elements(), t.elements);
            else write_state_buffer(w, t.state_type, s);
        }
    }
    w.finish();
}

//! hyperparameter_source::current: the staged registry `next` takes the group
//! options, masks and masking options of `current`; the masks must still serve
//! every tensor and keep every compact layout's bits.
template <class Rule>
void keep_hyperparameters(registry<Rule>& next, const registry<Rule>& current) {
    next.replace_groups(current.groups());
    next.set_masking(current.options().masking);
    next.set_default_mask_unchecked(current.default_mask());
    const auto views = mask_views(next, next.step_count());
    refresh_compact_words(next, views);
}

//! A parsed file: the registry as the file leaves it, and its state buffers.
template <class Rule>
struct staged_state {
    registry<Rule> next;
    std::vector<state_request> requests;
    std::vector<std::vector<std::byte>> buffers;
};

//! Parses and checks a file written for a registry like `r` (same rule, groups
//! by name and order, tensors by name, size and type), reading `in` to its end
//! and checking the checksum first (io/integrity.hpp). Throws childtune::error
//! on a truncated, corrupt, foreign or mismatched file; changes nothing.
template <class Rule>
staged_state<Rule> read_state_file(std::istream& in, const registry<Rule>& r, bool supports_compact,
                                   const load_options& options = {}, bool supports_blockwise8 = false) {
    validate_load_options(options);
    verified_input verified(in, "optimizer state", optimizer_state_magic);
    binary_reader reader(verified.stream(), "optimizer state");
    state_preamble preamble = read_state_preamble(reader, Rule::name, r.default_mask());
    staged_state<Rule> s{r, {}, {}};
    auto& next = s.next;
    next.replace_groups(read_state_groups<Rule>(reader, preamble.version, r.groups()));
    check_state_tensor_count(reader, r.tensor_count());
    std::vector<state_tensor_record> records(r.tensor_count());
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        const std::string where = "optimizer state, " + r.describe(t.group, t.name);
        records[i] = read_state_tensor(reader, state_record<Rule>(t, 0, 0, false), Rule::max_state_buffers,
                                       r.group(t.group).name, preamble.version);
        if (records[i].quantised && !supports_blockwise8)
            fail(where + ": holds 8-bit blockwise state, which this optimizer does not keep (load it into the CPU "
                         "optimizer)");
        if (records[i].compact) {
            if (!supports_compact_state<Rule>())
                fail(where + ": compact state, which the '" + std::string(Rule::name) + "' rule cannot keep (corrupt file)");
            if (!supports_compact)
                fail(where + ": holds compact Child-Tuning_D state, which this optimizer does not keep");
            if (t.elements != t.logical_size)
                fail(where + ": compact state for a slice of a tensor (only whole tensors keep compact state)");
        }
        // The file's own masks decide the compact layouts, so they are read first.
        std::size_t elements = t.elements;
        if (records[i].compact) {
            next.set_default_mask_unchecked(preamble.mask);
            const any_mask* m = next.mask_of(t.group);
            const std::uint64_t* words = m ? whole_fixed_words(m->view(next.info(i), preamble.steps), t.elements) : nullptr;
            if (!words) fail(where + ": compact state without its fixed mask (corrupt file)");
            auto& rec = next.tensors()[i];
            rec.kept_before = kept_before(words, t.elements);
            rec.compact_words = words;
            rec.compact_hash = mask_words_hash(words, t.elements);
            elements = rec.kept_before.back();
        }
        for (std::size_t b = 0; b < records[i].buffers; ++b) {
            s.requests.push_back({i, b, elements, t.state_type, records[i].quantised, t.elements});
            s.buffers.push_back(records[i].quantised ? read_quantised_state_buffer(reader, elements, t.elements)
                                                     : read_state_buffer(reader, t.state_type, elements));
        }
    }
    reader.finish_file();
    next.set_step_count(preamble.steps);
    next.set_masking(preamble.masking);
    next.set_default_mask_unchecked(std::move(preamble.mask));
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        auto& t = next.tensors()[i];
        t.steps = records[i].steps;
        t.buffers = records[i].buffers;
        t.compact = records[i].compact;
        t.quantised = records[i].quantised;
        if (!t.compact) t.kept_before.clear();
    }
    // Every masked tensor must be served by the file's masks.
    for (std::size_t i = 0; i < next.tensor_count(); ++i)
        if (const any_mask* m = next.mask_of(next.tensors()[i].group)) (void)m->view(next.info(i), preamble.steps);
    if (options.hyperparameters == hyperparameter_source::current) keep_hyperparameters(next, r);
    return s;
}

} // namespace childtune::detail
