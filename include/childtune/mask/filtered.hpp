#pragma once
//! \file
//! A mask policy applied to some tensors only, chosen by name: the tensors a
//! name_filter selects are masked by the inner policy, the others train densely.
//!
//! The published Child-Tuning code masks the encoder layers (names containing
//! "layer") and trains embeddings and the task head densely. With groups that
//! split is made when tensors are registered; `filtered` makes it when the mask
//! is set, over the names already (or later) registered, e.g.
//! `opt.set_mask(filtered{name_filter().include_glob("encoder.*"), fixed{masks}})`.
//!
//! No silent no-op: the step checks the filter against the names of the tensors
//! that use the policy (name_filter::check): a filter, or one of its patterns,
//! that matches none of them is an error, as is a fixed mask holding an entry
//! for a tensor that the filter leaves dense.

#include <childtune/error.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_from.hpp>
#include <childtune/mask/name_filter.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune {

//! The inner policy masks the tensors whose names `filter` selects; every other
//! tensor of the groups using this policy trains densely. Saved in optimizer
//! state files when the inner policy is a built-in one (dense, bernoulli, fixed).
struct filtered {
    //! Which tensors the inner policy masks.
    name_filter filter;
    //! The policy applied to them.
    any_mask inner;

    //! Name of the policy's record in optimizer state files.
    static constexpr std::string_view policy_name = "filtered";

    //! Validates the inner policy.
    void validate() const { inner.validate(); }
    //! The inner policy's view for a selected tensor, dense otherwise.
    any_mask_view view(const tensor_info& t, std::uint64_t step) const {
        if (!filter.matches(t.name)) return dense_view{};
        return inner.view(t, step);
    }
    //! The filter must select some of `users` and each of its patterns must
    //! match one of them; the inner policy is checked against the selected ones.
    void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const {
        std::vector<std::string_view> names;
        for (const auto& t : users) names.push_back(t.name);
        filter.check(names, "mask filter");
        std::vector<tensor_info> selected;
        for (const auto& t : users)
            if (filter.matches(t.name)) selected.push_back(t);
        if (const auto* f = inner.target<fixed>())
            for (const auto& e : f->masks.entries())
                for (const auto& t : users)
                    if (t.name == e.name && !filter.matches(t.name))
                        detail::fail("mask filter (" + filter.describe() + "): the fixed mask has an entry for tensor '" +
                                     e.name + "', which the filter leaves dense (mask and filter disagree)");
        inner.check_tensors(selected, registered);
    }

    //! Writes the patterns, then the inner built-in policy; a user policy inside
    //! a filter cannot be saved (its type is unknown when the file is read).
    void save(policy_writer& w) const {
        w.value<std::uint64_t>(filter.patterns().size());
        for (const auto& p : filter.patterns()) {
            w.string(p.text);
            w.value<std::uint8_t>(static_cast<std::uint8_t>(p.kind));
            w.value<std::uint8_t>(p.include ? 1 : 0);
        }
        if (inner.target<dense>()) {
            w.value<std::uint8_t>(0);
        } else if (const auto* b = inner.target<bernoulli>()) {
            w.value<std::uint8_t>(1);
            w.value<double>(b->p);
            w.value<std::uint64_t>(b->seed);
        } else if (const auto* f = inner.target<fixed>()) {
            w.value<std::uint8_t>(2);
            w.value<std::uint64_t>(f->masks.tensor_count());
            for (const auto& e : f->masks.entries()) {
                w.string(e.name);
                w.value<std::uint64_t>(e.mask.size());
                w.array(e.mask.words());
            }
        } else {
            detail::fail("filtered: the inner mask policy (" + std::string(inner.type().name()) +
                         ") is not a built-in one (dense, bernoulli, fixed), so a state file cannot hold it");
        }
    }
    //! Reads what save() wrote.
    static filtered load(policy_reader& r) {
        filtered out;
        const auto patterns = r.value<std::uint64_t>();
        for (std::uint64_t i = 0; i < patterns; ++i) {
            std::string text = r.string();
            const auto kind = r.value<std::uint8_t>();
            const auto include = r.value<std::uint8_t>();
            if (kind > 1 || include > 1) detail::fail(r.what() + " is corrupt: unknown pattern kind");
            if (kind == 0) include ? out.filter.include_glob(std::move(text)) : out.filter.exclude_glob(std::move(text));
            else include ? out.filter.include_regex(std::move(text)) : out.filter.exclude_regex(std::move(text));
        }
        switch (r.value<std::uint8_t>()) {
        case 0: out.inner = dense{}; break;
        case 1: {
            bernoulli b;
            b.p = r.value<double>();
            b.seed = r.value<std::uint64_t>();
            out.inner = b;
            break;
        }
        case 2: {
            mask_set masks;
            const auto count = r.value<std::uint64_t>();
            for (std::uint64_t i = 0; i < count; ++i) {
                std::string name = r.string();
                const auto size = r.value<std::uint64_t>();
                if (size > (std::uint64_t{1} << 56)) detail::fail(r.what() + ": tensor '" + name + "' claims an impossible size");
                const auto words = r.array<std::uint64_t>();
                masks.add(name, mask_from_words(name, static_cast<std::size_t>(size), words));
            }
            out.inner = fixed{std::move(masks)};
            break;
        }
        default: detail::fail(r.what() + " is corrupt: unknown inner mask policy");
        }
        return out;
    }

    //! Same filter and the same inner policy.
    friend bool operator==(const filtered& a, const filtered& b) {
        return a.filter == b.filter && a.inner.same_policy(b.inner);
    }
};

} // namespace childtune
