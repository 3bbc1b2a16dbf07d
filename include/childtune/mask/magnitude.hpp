#pragma once
//! \file
//! Magnitude masks (SIFT: Song et al. 2023, "Sparse is Enough in Fine-tuning
//! Pre-trained Large Language Models"): keep the gradient components of largest
//! magnitude, the top p of |g|.
//!
//! Two schedules, counted in the steps the policy has observed (c = 0, 1, ...):
//! - `window == 0`: fresh every step; step c keeps the top p of its own |g_c|.
//! - `window == W > 0`: steps c < W - 1 train densely while |g| is summed;
//!   at step W - 1 the mask is the top p of s = |g_0| + |g_1| + ... + |g_{W-1}|
//!   (float, added in step order) and stays fixed from then on (SIFT chooses
//!   it from early gradients). W = 1 fixes the first step's fresh mask.
//!
//! The cut (keep_ratio, selection_scope, selection_rule) is Fisher's
//! (select/top_p.hpp): an exact order statistic, O(N), no sort, the same on every
//! executor and rank. Tensors that use the policy but have no gradient at a
//! step keep their mask.

#include <childtune/error.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/mask/gradient_reader.hpp>
#include <childtune/mask/keep_ratio.hpp>
#include <childtune/mask/scored_mask.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/select/top_p.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune {

//! The magnitude mask policy (SIFT): hyperparameters, then the masks and window
//! sums it carries from step to step (policy data, saved with it).
struct magnitude {
    //! Fraction of components kept: a number, per group, or per tensor.
    keep_ratio p = 0.1;
    //! One cut per tensor (SIFT's choice) or over all tensors together.
    selection_scope scope = selection_scope::per_tensor;
    //! exact_count keeps exactly round(p·N) (ties by index); percentile keeps
    //! every element tied with numpy.percentile's cut.
    selection_rule rule = selection_rule::exact_count;
    //! 0: a fresh mask every step; W > 0: fixed after a window of W steps.
    std::uint64_t window = 0;
    //! What the policy carries between steps (masks, window sums, counters):
    //! set by observe() and load(); leave it default.
    detail::scored_mask_state carried{};

    //! Its name in state files.
    static constexpr std::string_view policy_name = "childtune.magnitude";

    //! Throws childtune::error for a p outside (0, 1] or an unknown scope or rule.
    void validate() const {
        ratio_check();
        if (scope != selection_scope::global && scope != selection_scope::per_tensor)
            detail::fail("magnitude mask: unknown selection scope " + std::to_string(static_cast<int>(scope)));
        if (rule != selection_rule::percentile && rule != selection_rule::exact_count)
            detail::fail("magnitude mask: unknown selection rule " + std::to_string(static_cast<int>(rule)));
    }
    //! The mask of tensor t in force (dense before the first selection).
    any_mask_view view(const tensor_info& t, std::uint64_t /*step*/) const { return carried.view(t); }

    //! The policy after this step's gradients (see the file comment).
    magnitude observe(const gradient_reader& g, std::uint64_t /*step*/) const {
        magnitude next = *this;
        ++next.carried.observed;
        if (window == 0) {
            next.carried.reselect(select(g, [&](std::size_t k) { return g.values(k); }, detail::absolute_projection{}));
            next.carried.active = true;
            return next;
        }
        if (carried.observed >= window) return next; // fixed
        next.carried.accumulate(g, [](float x) { return std::fabs(x); });
        if (next.carried.observed == window) {
            const auto& s = next.carried;
            next.carried.reselect(select(g, [&](std::size_t k) { return std::span<const float>(*s.scores[k]); },
                                        detail::identity_projection{}));
            next.carried.clear_scores();
            next.carried.active = true;
        }
        return next;
    }

    //! Steps observed so far.
    std::uint64_t observed_steps() const { return carried.observed; }
    //! The masks in force (empty before the first selection).
    const mask_set& masks() const { return *carried.masks; }
    //! Whether a mask applies (false during the window).
    bool active() const { return carried.active; }
    //! Overlap of each tensor's mask with the one before, at the last
    //! reselection (fresh masks: the previous step's).
    const std::vector<mask_overlap>& last_overlap() const { return carried.last_overlap; }

    //! Writes hyperparameters, step count, masks and window sums.
    void save(policy_writer& w) const {
        detail::save_selection_head(w, "magnitude mask", *this);
        w.value(window);
        carried.save(w);
    }
    //! Reads what save() wrote.
    static magnitude load(policy_reader& r) {
        magnitude m;
        detail::load_selection_head(r, m);
        m.window = r.value<std::uint64_t>();
        m.carried = detail::scored_mask_state::load(r);
        return m;
    }
    //! Equal hyperparameters, step counts, masks and sums.
    friend bool operator==(const magnitude&, const magnitude&) = default;

private:
    void ratio_check() const { p.validate("magnitude mask"); }
    template <class Scores, class Proj>
    mask_set select(const gradient_reader& g, Scores&& scores, const Proj& proj) const {
        std::vector<tensor_info> infos;
        std::vector<std::span<const float>> spans;
        for (std::size_t k = 0; k < g.size(); ++k) {
            infos.push_back(g.info(k));
            spans.push_back(scores(k));
        }
        return detail::select_by_ratio<float>("magnitude mask", infos, std::span<const std::span<const float>>(spans), p,
                                              scope, rule, proj);
    }

};

} // namespace childtune
