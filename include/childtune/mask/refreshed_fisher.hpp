#pragma once
//! \file
//! Refreshed Fisher masks (DPS: Zhang et al. 2022, "Fine-Tuning Pre-Trained
//! Language Models Effectively by Optimizing Subnetworks Adaptively"): the
//! subnetwork is reselected periodically from the squared training gradients of
//! the last window (an empirical Fisher estimate at no extra forward or
//! backward pass), with dense phases if wanted.
//!
//! The schedule, in the steps the policy has observed (c = 0, 1, ...), with
//! warm-up W0, period R >= 1 and D < R dense steps per period:
//! - every step adds g² to the scores s (float, s = s + g·g, in step order);
//! - steps c < W0 train densely (warm-up);
//! - at c = W0 + k·R (k = 0, 1, ...) the mask is reselected as the top p of s
//!   (the steps since the previous reselection, this one included), and s is
//!   reset to zero;
//! - step c >= W0 is masked by the latest mask when (c - W0) mod R < R - D,
//!   and trains densely otherwise (the dense phase before each reselection).
//!
//! The scores are policy data: saved with the optimizer, so a run resumed
//! mid-window continues bit for bit. In a sharded optimizer every rank sees the
//! whole tensors' gradients (gathered through the communicator), so scores and
//! masks are identical on every rank.

#include <childtune/error.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/mask/gradient_reader.hpp>
#include <childtune/mask/keep_ratio.hpp>
#include <childtune/mask/scored_mask.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/rounding.hpp>
#include <childtune/select/top_p.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace childtune {

//! The refreshed Fisher mask policy (DPS): hyperparameters, then the masks and
//! window scores it carries from step to step (policy data, saved with it).
struct refreshed_fisher {
    //! Fraction of elements kept: a number, per group, or per tensor (DPS: per layer).
    keep_ratio p = 0.3;
    //! One cut per tensor or over all tensors together.
    selection_scope scope = selection_scope::per_tensor;
    //! exact_count (round(p·N), ties by index) or percentile (numpy's cut, ties kept).
    selection_rule rule = selection_rule::exact_count;
    //! W0: dense steps before the first selection.
    std::uint64_t warmup = 0;
    //! R: steps between reselections (>= 1).
    std::uint64_t period = 100;
    //! D: dense steps at the end of each period (< R).
    std::uint64_t dense_steps = 0;
    //! What the policy carries between steps (masks, window scores, counters):
    //! set by observe() and load(); leave it default.
    detail::scored_mask_state carried{};

    //! Its name in state files.
    static constexpr std::string_view policy_name = "childtune.refreshed_fisher";

    //! Throws childtune::error for a bad p, period 0, dense_steps >= period, or
    //! an unknown scope or rule.
    void validate() const {
        p.validate("refreshed Fisher mask");
        if (period == 0) detail::fail("refreshed Fisher mask: period = 0; the mask is reselected every period >= 1 steps");
        if (dense_steps >= period)
            detail::fail("refreshed Fisher mask: dense_steps = " + std::to_string(dense_steps) + " is not below period = " +
                         std::to_string(period) + " (no step would be masked)");
        if (scope != selection_scope::global && scope != selection_scope::per_tensor)
            detail::fail("refreshed Fisher mask: unknown selection scope " + std::to_string(static_cast<int>(scope)));
        if (rule != selection_rule::percentile && rule != selection_rule::exact_count)
            detail::fail("refreshed Fisher mask: unknown selection rule " + std::to_string(static_cast<int>(rule)));
    }
    //! The mask of tensor t in force (dense in warm-up and dense phases).
    any_mask_view view(const tensor_info& t, std::uint64_t /*step*/) const { return carried.view(t); }

    //! The policy after this step's gradients (see the file comment).
    refreshed_fisher observe(const gradient_reader& g, std::uint64_t /*step*/) const {
        refreshed_fisher next = *this;
        const std::uint64_t c = carried.observed; // this step's index in the schedule
        next.carried.observed = c + 1;
        next.carried.accumulate(g, [](float x) { return detail::mul_rn(x, x); });
        if (c < warmup) return next;
        const std::uint64_t phase = (c - warmup) % period;
        if (phase == 0) {
            std::vector<tensor_info> infos;
            std::vector<std::span<const float>> spans;
            for (std::size_t k = 0; k < g.size(); ++k) {
                infos.push_back(g.info(k));
                spans.push_back(*next.carried.scores[k]);
            }
            next.carried.reselect(detail::select_by_ratio<float>("refreshed Fisher mask", infos,
                                                                std::span<const std::span<const float>>(spans), p, scope, rule));
            next.carried.clear_scores();
        }
        next.carried.active = phase < period - dense_steps;
        return next;
    }

    //! Steps observed so far.
    std::uint64_t observed_steps() const { return carried.observed; }
    //! Reselections so far.
    std::uint64_t selections() const { return carried.selections; }
    //! The masks of the last selection (empty before the first).
    const mask_set& masks() const { return *carried.masks; }
    //! Whether the mask applies at the last observed step (false in warm-up and dense phases).
    bool active() const { return carried.active; }
    //! The window scores of tensor `name` so far (null when it has none).
    const std::vector<float>* scores(std::string_view name) const { return carried.find_scores(name); }
    //! Overlap of each tensor's mask with the one before, at the last reselection.
    const std::vector<mask_overlap>& last_overlap() const { return carried.last_overlap; }

    //! Writes hyperparameters, counters, masks and window scores.
    void save(policy_writer& w) const {
        detail::save_selection_head(w, "refreshed Fisher mask", *this);
        w.value(warmup);
        w.value(period);
        w.value(dense_steps);
        carried.save(w);
    }
    //! Reads what save() wrote.
    static refreshed_fisher load(policy_reader& r) {
        refreshed_fisher m;
        detail::load_selection_head(r, m);
        m.warmup = r.value<std::uint64_t>();
        m.period = r.value<std::uint64_t>();
        m.dense_steps = r.value<std::uint64_t>();
        m.carried = detail::scored_mask_state::load(r);
        return m;
    }
    //! Equal hyperparameters, counters, masks and scores.
    friend bool operator==(const refreshed_fisher&, const refreshed_fisher&) = default;

};

} // namespace childtune
