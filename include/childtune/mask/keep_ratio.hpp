#pragma once
//! \file
//! How much a selecting mask policy keeps, and over what the cut is made: p as
//! one number, per parameter group, or a function of the tensor (layer-wise
//! ratios), and a global cut or one per tensor. Shared by the magnitude masks,
//! the refreshed Fisher masks and Fisher top-p (fisher_accumulator::select).
//!
//! Child-Tuning_D cuts all scores together (one global threshold); SIFT (Song et
//! al. 2023) keeps the top fraction of each tensor; DPS (Zhang et al. 2022)
//! selects per layer. With a per-tensor cut every tensor keeps its own share
//! whatever the scale of its scores; a global cut lets tensors with large scores
//! take most of the budget.

#include <childtune/error.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/select/top_p.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune {

//! Over which elements one top-p cut is made.
enum class selection_scope : std::uint8_t {
    //! One cut over every tensor that uses the policy (one per group when p is
    //! given per group), as Child-Tuning_D.
    global,
    //! One cut per tensor, at that tensor's p (SIFT, DPS).
    per_tensor,
};

//! The fraction p in (0, 1] a selecting policy keeps: one number, one per
//! parameter group (by group name), or a function of the tensor. A function
//! cannot be written into a state file; numbers and per-group ratios can.
class keep_ratio {
public:
    //! The type of a function ratio: p of the tensor `t`, which is the
    //! `index`-th (from 0, registration order) of the tensors shown to the policy.
    using function = std::function<double(const tensor_info& t, std::size_t index)>;

    //! p for every tensor.
    keep_ratio(double p = 1.0) : p_(p) {} // NOLINT(google-explicit-constructor): a number is a ratio
    //! p per group, by group name; a group that is not listed is an error at selection.
    static keep_ratio per_group(std::map<std::string, double> by_group) {
        keep_ratio r;
        r.kind_ = kind::per_group;
        r.groups_ = std::move(by_group);
        return r;
    }
    //! p from a function of the tensor (name, group, index), e.g. a ratio per layer.
    static keep_ratio by_tensor(function f) {
        keep_ratio r;
        r.kind_ = kind::by_tensor;
        r.f_ = std::make_shared<const function>(std::move(f));
        return r;
    }

    //! Whether every tensor has the same p (a number).
    bool uniform() const { return kind_ == kind::number; }
    //! Whether it can be saved (a number or per-group ratios).
    bool saveable() const { return kind_ != kind::by_tensor; }

    //! Throws childtune::error, naming `who`, for a p outside (0, 1], an empty
    //! per-group map or a missing function.
    void validate(std::string_view who) const {
        if (kind_ == kind::number) check(who, "p", p_);
        if (kind_ == kind::per_group) {
            if (groups_.empty()) detail::fail(std::string(who) + ": keep_ratio::per_group lists no group");
            for (const auto& [g, p] : groups_) check(who, "p of group '" + g + "'", p);
        }
        if (kind_ == kind::by_tensor && !(*f_)) detail::fail(std::string(who) + ": keep_ratio::by_tensor has no function");
    }
    //! p of tensor `t` (the `index`-th shown); throws for a group that is not
    //! listed or a function result outside (0, 1], naming the tensor.
    double of(std::string_view who, const tensor_info& t, std::size_t index) const {
        if (kind_ == kind::number) return p_;
        if (kind_ == kind::per_group) {
            const auto it = groups_.find(std::string(t.group_name));
            if (it == groups_.end())
                detail::fail(std::string(who) + ": group '" + std::string(t.group_name) + "' of tensor '" +
                             std::string(t.name) + "' has no keep ratio (keep_ratio::per_group)");
            return it->second;
        }
        const double p = (*f_)(t, index);
        check(who, "p of tensor '" + std::string(t.name) + "'", p);
        return p;
    }

    //! Writes a number or per-group ratios (a function ratio throws: it cannot be saved).
    void save(policy_writer& w, std::string_view who) const {
        if (!saveable())
            detail::fail(std::string(who) + ": a keep_ratio::by_tensor function cannot be saved into a state file; "
                                            "use a number or keep_ratio::per_group");
        w.value<std::uint8_t>(static_cast<std::uint8_t>(kind_));
        w.value(p_);
        w.value<std::uint64_t>(groups_.size());
        for (const auto& [g, p] : groups_) {
            w.string(g);
            w.value(p);
        }
    }
    //! Reads what save() wrote.
    static keep_ratio load(policy_reader& r) {
        keep_ratio out;
        const auto k = r.value<std::uint8_t>();
        if (k > static_cast<std::uint8_t>(kind::per_group)) detail::fail(r.what() + ": unknown keep ratio kind " + std::to_string(k));
        out.kind_ = static_cast<kind>(k);
        out.p_ = r.value<double>();
        const auto n = r.value<std::uint64_t>();
        for (std::uint64_t i = 0; i < n; ++i) {
            std::string g = r.string();
            out.groups_[std::move(g)] = r.value<double>();
        }
        return out;
    }
    //! Equal numbers, equal maps, or the same function object.
    friend bool operator==(const keep_ratio& a, const keep_ratio& b) {
        return a.kind_ == b.kind_ && a.p_ == b.p_ && a.groups_ == b.groups_ && a.f_ == b.f_;
    }

private:
    enum class kind : std::uint8_t { number, per_group, by_tensor };
    static void check(std::string_view who, const std::string& what, double p) {
        if (!(p > 0.0 && p <= 1.0))
            detail::fail(std::string(who) + ": " + what + " = " + detail::format_number(p) +
                         " is outside (0, 1]; p is the fraction of elements kept");
    }
    kind kind_ = kind::number;
    double p_ = 1.0;
    std::map<std::string, double> groups_;
    std::shared_ptr<const function> f_;
};

namespace detail {

//! The masks of scores[k] (tensor infos[k]): the top p of proj(score) under
//! `ratio`, `scope` and `rule`, keyed by tensor name, in the given order. O(N):
//! one order statistic per cut (select/top_p.hpp), never a sort.
template <score_element Score, class Proj = identity_projection, class Backend = default_backend>
mask_set select_by_ratio(std::string_view who, std::span<const tensor_info> infos,
                         std::span<const std::span<const Score>> scores, const keep_ratio& ratio, selection_scope scope,
                         selection_rule rule, const Proj& proj = {}, const Backend& backend = {}) {
    if (infos.empty()) fail(std::string(who) + ": no tensor to select from (no tensor that uses the policy has a gradient)");
    if (rule != selection_rule::percentile && rule != selection_rule::exact_count)
        fail(std::string(who) + ": unknown selection rule " + std::to_string(static_cast<int>(rule)));
    if (scope != selection_scope::global && scope != selection_scope::per_tensor)
        fail(std::string(who) + ": unknown selection scope " + std::to_string(static_cast<int>(scope)));
    std::vector<double> p(infos.size());
    for (std::size_t k = 0; k < infos.size(); ++k) p[k] = ratio.of(who, infos[k], k);
    if (scope == selection_scope::global && !ratio.uniform() && !ratio.saveable())
        fail(std::string(who) + ": a keep ratio that depends on the tensor needs selection_scope::per_tensor");
    // Cuts: sets of tensors selected together (all, one per group, or one per tensor).
    std::vector<std::vector<std::size_t>> cuts;
    if (scope == selection_scope::per_tensor) {
        for (std::size_t k = 0; k < infos.size(); ++k) cuts.push_back({k});
    } else {
        std::map<std::size_t, std::size_t> by_group;
        for (std::size_t k = 0; k < infos.size(); ++k) {
            const std::size_t key = ratio.uniform() ? 0 : infos[k].group;
            auto [it, fresh] = by_group.try_emplace(key, cuts.size());
            if (fresh) cuts.emplace_back();
            cuts[it->second].push_back(k);
        }
    }
    std::vector<bit_mask> masks(infos.size());
    for (const auto& cut : cuts) {
        std::vector<std::string_view> names;
        std::vector<std::span<const Score>> spans;
        std::size_t total = 0;
        for (const auto k : cut) {
            if (scores[k].size() != infos[k].size)
                fail(std::string(who) + ": tensor '" + std::string(infos[k].name) + "' has " + std::to_string(infos[k].size) +
                     " elements but " + std::to_string(scores[k].size()) + " scores");
            names.push_back(infos[k].name);
            spans.push_back(scores[k]);
            total += scores[k].size();
        }
        check_top_p_input(names, p[cut.front()], total);
        top_p_result r = select_top_p<Score>(names, spans, p[cut.front()], rule, proj, backend);
        for (const auto k : cut) masks[k] = *r.masks.find(infos[k].name);
    }
    mask_set out;
    for (std::size_t k = 0; k < infos.size(); ++k) out.add(std::string(infos[k].name), std::move(masks[k]));
    return out;
}

//! Writes the head of a selecting policy's state record (mask/magnitude.hpp,
//! mask/refreshed_fisher.hpp): record version 1, then the policy's keep ratio
//! `p`, `scope` and `rule`; `who` names the policy in errors.
template <class Policy>
void save_selection_head(policy_writer& w, std::string_view who, const Policy& m) {
    w.value<std::uint32_t>(1);
    m.p.save(w, who);
    w.value<std::uint8_t>(static_cast<std::uint8_t>(m.scope));
    w.value<std::uint8_t>(static_cast<std::uint8_t>(m.rule));
}
//! Reads what save_selection_head wrote into `m`.
template <class Policy>
void load_selection_head(policy_reader& r, Policy& m) {
    if (const auto v = r.value<std::uint32_t>(); v != 1)
        fail(r.what() + ": record version " + std::to_string(v) + " is not 1 (written by a newer childtune?)");
    m.p = keep_ratio::load(r);
    m.scope = static_cast<selection_scope>(r.value<std::uint8_t>());
    m.rule = static_cast<selection_rule>(r.value<std::uint8_t>());
}

} // namespace detail

} // namespace childtune
