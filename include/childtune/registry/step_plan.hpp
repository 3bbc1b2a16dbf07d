#pragma once
//! \file
//! What one step does to each tensor, decided once for every executor: its mask
//! view, how many state buffers it uses and in which layout, the state that must
//! be allocated first, and the rule's per-step constants.
//!
//! plan_step() validates everything a step depends on and changes nothing;
//! commit_plan() records the state the step creates (noexcept), after the
//! executor allocated it. So a step either happens entirely or not at all.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/state_layout.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/rule_traits.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace childtune::detail {

//! One tensor's part of a step.
template <class Rule>
struct tensor_job {
    std::size_t tensor = 0;
    any_mask_view mask;
    std::size_t buffers = 0;   //!< state buffers this step uses (the tensor may hold more)
    bool fresh = false;        //!< some of them are created by this step
    bool compact = false;      //!< its state is in the compact layout
    bool quantised = false;    //!< its state is 8-bit blockwise (exec/quantised_state.hpp)
    //! When the tensor's state becomes compact at this step: its layout.
    std::vector<std::uint32_t> new_kept_before;
    const std::uint64_t* compact_words = nullptr;
    typename Rule::template step_constants<float> constants_f{};
    typename Rule::template step_constants<double> constants_d{};
};

//! State an executor must allocate (zeros) before a step, or fill from a file.
struct state_request {
    std::size_t tensor = 0;
    std::size_t buffer = 0;
    std::size_t elements = 0;
    dtype type = dtype::float32;
    //! 8-bit blockwise: `elements` codes, then the scales of a tensor of this many elements.
    bool quantised = false;
    std::size_t tensor_elements = 0;
    friend bool operator==(const state_request&, const state_request&) = default;
};

template <class Rule>
struct step_plan {
    std::vector<tensor_job<Rule>> jobs; //!< tensors whose gradient is present, in registration order
    std::vector<state_request> requests;
};

//! Compact state gives the full layout's results only when the rule says so.
template <class Rule>
void check_compact_exact(const registry<Rule>& r, std::size_t group) {
    if constexpr (supports_compact_state<Rule>()) {
        if (!Rule::compact_state_exact(r.group(group).options, r.options().masking))
            fail("group '" + r.group(group).name +
                 "': compact Child-Tuning_D state needs the mask on the gradient and eps > 0 "
                 "(otherwise masked entries' state or updates are not zero)");
    }
}

//! A tensor holding compact state must keep the mask it was laid out for.
inline void check_compact_kept(const std::string& where, const any_mask_view& v, std::size_t n,
                               const std::uint64_t* words, std::uint64_t hash) {
    if (!same_compact_mask(v, n, words, hash))
        fail(where + " keeps compact Child-Tuning_D state for its current mask; "
             "the mask cannot change (the moments of newly kept elements were never stored)");
}

//! A policy's next value, chosen by its `observe` from this step's gradients
//! (registry/gradient_step.hpp), not yet committed: `old` is the registry's.
struct policy_update {
    const any_mask* old = nullptr;
    any_mask next;
};

//! The policy that serves a step: the update of `m` when there is one, else `m`.
inline const any_mask* policy_for_step(const any_mask* m, const std::vector<policy_update>* updates) {
    if (m && updates)
        for (const auto& u : *updates)
            if (u.old == m) return &u.next;
    return m;
}

//! The views of every tensor's mask at step `step` (the policies replaced by
//! `updates` where given), and the compact layout checks.
template <class Rule>
std::vector<any_mask_view> mask_views(const registry<Rule>& r, std::uint64_t step,
                                      const std::vector<policy_update>* updates = nullptr) {
    std::vector<any_mask_view> views(r.tensor_count());
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        if (const any_mask* m = policy_for_step(r.mask_of(t.group), updates)) views[i] = m->view(r.info(i), step);
        if (t.compact && t.buffers > 0) check_compact_kept(r.describe(t.group, t.name), views[i], t.elements, t.compact_words, t.compact_hash);
    }
    return views;
}

//! After a change of masks that kept every compact layout's bits: point the
//! layouts at the new policies' words (the old ones may be gone).
template <class Rule>
void refresh_compact_words(registry<Rule>& r, const std::vector<any_mask_view>& views) noexcept {
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        auto& t = r.tensors()[i];
        if (t.compact && t.buffers > 0) t.compact_words = whole_fixed_words(views[i], t.elements);
    }
}

//! A step that would update nothing, or mask nothing of a masked group, is
//! refused unless optimizer_options::allow_empty says it is meant.
template <class Rule>
void check_not_empty(const registry<Rule>& r) {
    if (r.tensor_count() == 0)
        fail("step: no tensor is registered, so the step would update nothing (register parameters first, or set "
             "optimizer_options::allow_empty)");
    std::vector<bool> used(r.group_count(), false);
    for (const auto& t : r.tensors()) used[t.group] = true;
    for (std::size_t g = 0; g < r.group_count(); ++g)
        if (!used[g] && r.mask_of(g))
            fail("step: group '" + r.group(g).name +
                 "' is masked but holds no tensor, so its mask applies to nothing (did a name filter match no "
                 "parameter?); add its tensors, or set optimizer_options::allow_empty");
}

//! Plans the next step (with the policies of `updates` in place of those they
//! replace); validates and changes nothing.
template <class Rule>
step_plan<Rule> plan_step(const registry<Rule>& r, const std::vector<policy_update>* updates = nullptr) {
    r.check_masks();
    if (!r.options().allow_empty) check_not_empty(r);
    std::vector<any_mask_view> views = mask_views(r, r.step_count(), updates);
    step_plan<Rule> plan;
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        if (!t.has_gradient) continue;
        const auto& options = r.group(t.group).options;
        tensor_job<Rule> j;
        j.tensor = i;
        j.mask = std::move(views[i]);
        j.buffers = Rule::state_buffers(options);
        if (!with_state_buffers<Rule>(j.buffers, [](auto) {}))
            fail("group '" + r.group(t.group).name + "': the '" + std::string(Rule::name) + "' rule asks for " +
                 std::to_string(j.buffers) + " state buffers");
        j.fresh = t.buffers < j.buffers;
        // A tensor is compacted at its first step under a fixed mask; one that
        // already holds full state keeps it (the results are the same). One that
        // holds compact state (e.g. from a file) steps compactly whatever the
        // optimizer's option says: the full layout would index past it.
        std::size_t elements = t.elements;
        if (t.compact) {
            check_compact_exact(r, t.group);
            j.compact = true;
            j.compact_words = whole_fixed_words(j.mask, t.elements);
            elements = t.kept_before.back();
        } else if (r.options().compact_fixed_state && t.buffers == 0 && r.mask_of(t.group) &&
                   !r.mask_of(t.group)->reads_gradients()) { // a gradient-driven mask changes
            if (const std::uint64_t* w = whole_fixed_words(j.mask, t.elements)) {
                check_compact_exact(r, t.group);
                j.compact = true;
                j.compact_words = w;
                j.new_kept_before = kept_before(w, t.elements);
                elements = j.new_kept_before.back();
            }
        }
        // Storage, like the layout, is chosen when a tensor's state is created.
        j.quantised = t.buffers == 0 ? r.options().storage == state_storage::blockwise8 : t.quantised;
        for (std::size_t b = t.buffers; b < j.buffers; ++b)
            plan.requests.push_back({i, b, elements, t.state_type, j.quantised, t.elements});
        if (t.state_type == dtype::float64) j.constants_d = Rule::template prepare<double>(options, t.steps + 1, j.fresh);
        else j.constants_f = Rule::template prepare<float>(options, t.steps + 1, j.fresh);
        plan.jobs.push_back(std::move(j));
    }
    return plan;
}

//! Records the state layout the planned step creates (its state is allocated).
template <class Rule>
void commit_plan(registry<Rule>& r, step_plan<Rule>& plan) noexcept {
    for (auto& j : plan.jobs) {
        auto& t = r.tensors()[j.tensor];
        if (t.buffers == 0 && j.buffers > 0) t.quantised = j.quantised;
        t.buffers = std::max(t.buffers, j.buffers);
        if (!j.new_kept_before.empty()) {
            t.compact = true;
            t.kept_before = std::move(j.new_kept_before);
            t.compact_words = j.compact_words;
            t.compact_hash = mask_words_hash(j.compact_words, t.elements);
        } else if (t.compact) {
            t.compact_words = j.compact_words; // the same bits, perhaps in another policy object
        }
    }
}

//! Counts the step: every tensor that took part, and the optimizer.
template <class Rule>
void finish_step(registry<Rule>& r, const step_plan<Rule>& plan) noexcept {
    for (const auto& j : plan.jobs) ++r.tensors()[j.tensor].steps;
    r.set_step_count(r.step_count() + 1);
}

} // namespace childtune::detail
