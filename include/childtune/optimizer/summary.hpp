#pragma once
//! \file
//! What an optimizer trains, for the log: tensors and elements per group,
//! masked or not, under which policy, and how many elements the last step kept.
//!
//! A masked group that silently trains densely (a filter that matched nothing,
//! a mask set for the wrong model) looks like any other run in the loss curve;
//! one line per group at start-up and the kept fraction after a step show it.
//!
//! Cost of the kept counts: nothing is counted inside the step. summarize()
//! re-reads the last step's keep decisions from the mask views (they are pure
//! functions of the step, masks/tensor_info.hpp): a dense group costs nothing,
//! a fixed mask one popcount per 64 elements (N/64 word reads), a Bernoulli
//! mask its keep draws again, about the cost of the masking part of one step.
//! Pass `count_kept = false` for the shape alone, at no cost per element.

#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/filtered.hpp>
#include <childtune/mask/fixed.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace childtune {

//! One registered tensor (a slice of it, on a rank of a sharded optimizer).
struct tensor_summary {
    //! Registration name.
    std::string name;
    //! Index of its group.
    std::size_t group = 0;
    //! Elements registered.
    std::size_t elements = 0;
    //! Whether a mask policy applies to it (its group's; a filtered policy may still keep all of it).
    bool masked = false;
    //! Elements the last step kept (none before the first step, or when not counted).
    std::optional<std::size_t> kept;
};

//! One parameter group.
struct group_summary {
    //! Group name.
    std::string name;
    //! Whether a mask policy applies (false: the group trains densely).
    bool masked = false;
    //! The policy, described (`bernoulli(p=0.3, seed=7)`, `fixed (12 tensors)`, `dense`...).
    std::string policy;
    //! Tensors registered in the group.
    std::size_t tensors = 0;
    //! Elements over those tensors.
    std::size_t elements = 0;
    //! Elements the last step kept, when counted.
    std::optional<std::size_t> kept;
    //! kept / elements (0 for an empty group), when counted.
    std::optional<double> kept_fraction() const {
        if (!kept) return std::nullopt;
        return elements == 0 ? 0.0 : static_cast<double>(*kept) / static_cast<double>(elements);
    }
};

//! The summary of an optimizer (summarize()).
struct optimizer_summary {
    //! Steps applied; the kept counts are those of step `steps - 1`.
    std::uint64_t steps = 0;
    //! Groups, in order.
    std::vector<group_summary> groups;
    //! Tensors, in registration order.
    std::vector<tensor_summary> tensors;
};

//! `bernoulli(p=0.3, seed=7)`, `fixed (2 tensors, 1000 of 4000 kept)`, `dense`,
//! `filtered(include glob 'enc.*') of ...`, or a user policy's name or type.
inline std::string describe_policy(const any_mask& m) {
    if (m.target<dense>()) return "dense";
    if (const auto* b = m.target<bernoulli>())
        return "bernoulli(p=" + detail::format_number(b->p) + ", seed=" + std::to_string(b->seed) + ")";
    if (const auto* f = m.target<fixed>())
        return "fixed (" + std::to_string(f->masks.tensor_count()) + " tensors, " + std::to_string(f->masks.total_kept()) +
               " of " + std::to_string(f->masks.total_size()) + " kept)";
    if (const auto* f = m.target<filtered>()) return "filtered(" + f->filter.describe() + ") of " + describe_policy(f->inner);
    if (m.saveable()) return std::string(m.policy_name());
    return std::string("user policy ") + m.type().name();
}

//! The summary of `opt`: any childtune optimizer (CPU, Thrust; `opt.core()` of
//! the LibTorch and sharded ones). `count_kept` re-reads the last step's
//! keep decisions (see the file comment for the cost).
template <class Optimizer>
optimizer_summary summarize(const Optimizer& opt, bool count_kept = true) {
    const auto& r = opt.registry();
    optimizer_summary s;
    s.steps = r.step_count();
    const bool counted = count_kept && s.steps > 0;
    for (std::size_t g = 0; g < r.group_count(); ++g) {
        const any_mask* m = r.mask_of(g);
        s.groups.push_back({r.groups()[g].name, m != nullptr, m ? describe_policy(*m) : "none (dense)", 0, 0,
                            counted ? std::optional<std::size_t>(0) : std::nullopt});
    }
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        const any_mask* m = r.mask_of(t.group);
        tensor_summary ts{t.name, t.group, t.elements, m != nullptr, std::nullopt};
        if (counted) {
            std::size_t kept = t.elements;
            if (m) {
                const any_mask_view v = m->view(r.info(i), s.steps - 1);
                if (!v.dense()) {
                    kept = 0;
                    for (std::size_t first = 0; first < t.elements; first += 64) {
                        std::uint64_t bits = v.bits64(first);
                        if (t.elements - first < 64) bits &= (std::uint64_t{1} << (t.elements - first)) - 1;
                        kept += static_cast<std::size_t>(std::popcount(bits));
                    }
                }
            }
            ts.kept = kept;
            *s.groups[t.group].kept += kept;
        }
        ++s.groups[t.group].tensors;
        s.groups[t.group].elements += t.elements;
        s.tensors.push_back(std::move(ts));
    }
    return s;
}

//! One line per group, then one per tensor:
//! `group 'encoder': masked, bernoulli(p=0.3, seed=7), 2 tensors, 4000 elements, kept 1204 (30.10%) at step 9`.
inline std::ostream& operator<<(std::ostream& out, const optimizer_summary& s) {
    const auto kept_text = [&](std::optional<std::size_t> kept, std::size_t elements) {
        if (!kept) return std::string(s.steps == 0 ? ", no step yet" : "");
        std::ostringstream o;
        o.setf(std::ios::fixed);
        o.precision(2);
        o << ", kept " << *kept << " ("
          << (elements == 0 ? 0.0 : 100.0 * static_cast<double>(*kept) / static_cast<double>(elements)) << "%) at step "
          << s.steps - 1;
        return o.str();
    };
    for (const auto& g : s.groups)
        out << "group '" << g.name << "': " << (g.masked ? "masked, " + g.policy : std::string("dense")) << ", " << g.tensors
            << " tensors, " << g.elements << " elements" << kept_text(g.kept, g.elements) << "\n";
    for (const auto& t : s.tensors)
        out << "  tensor '" << t.name << "' (group '" << s.groups[t.group].name << "'): " << t.elements << " elements"
            << (t.masked ? "" : ", dense") << kept_text(t.kept, t.elements) << "\n";
    return out;
}

//! The summary as text (operator<<).
inline std::string to_string(const optimizer_summary& s) {
    std::ostringstream out;
    out << s;
    return out.str();
}

} // namespace childtune
