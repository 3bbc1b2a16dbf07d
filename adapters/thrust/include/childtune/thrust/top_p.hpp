#pragma once
//! \file
//! Global top-p selection over score tensors in a Thrust system's memory: the
//! Child-Tuning_D cut of select/top_p.hpp (both rules, the same threshold, the
//! same ties) computed where the scores are, giving the CPU's bit-packed masks.
//!
//! Cost: the radix select's histogram passes (order_statistic.hpp) plus one pass
//! writing the masks (two with exact_count when the cut splits ties, which keeps
//! the first ones in flattened order through a scan of per-word tie counts).
//! Extra memory: the masks, and with split ties one 8-byte count per 64 scores.

#include <childtune/error.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/thrust/mask_set.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/order_statistic.hpp>
#include <childtune/thrust/slot_search.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/scan.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! The selected masks (in the system's memory, one per tensor in the order
//! given), the threshold applied and the number of kept elements: the fields of
//! the core's top_p_result.
struct device_top_p_result {
    //! One mask per tensor, in the system's memory.
    device_mask_set masks;
    //! The threshold applied (as top_p_result::threshold).
    double threshold = 0;
    //! Elements kept over all tensors.
    std::uint64_t kept = 0;
};

namespace detail {

using childtune::detail::compare_op;

//! Where a tensor's scores and mask words are.
template <score_element Score>
struct mask_slot {
    const Score* scores;
    std::uint64_t size;
    std::uint64_t first_word;
};

//! Bits of mask word `w` (counted over all tensors) under comparison `Op`.
template <score_element Score, class Proj>
struct word_bits {
    const mask_slot<Score>* slots;
    std::uint32_t count;
    Proj proj;
    Score threshold;

    template <compare_op Op>
    CHILDTUNE_HD std::uint64_t bits(std::uint64_t w) const {
        const mask_slot<Score>& s =
            slot_of(slots, count, w, [](const mask_slot<Score>& x) { return x.first_word; });
        const std::uint64_t first = (w - s.first_word) * 64;
        const std::uint64_t n = s.size - first < 64 ? s.size - first : 64;
        std::uint64_t out = 0;
        for (std::uint64_t j = 0; j < n; ++j) {
            const Score v = proj(s.scores[first + j]);
            bool on;
            if constexpr (Op == compare_op::greater_equal) on = v >= threshold;
            else if constexpr (Op == compare_op::greater) on = v > threshold;
            else on = v == threshold;
            out |= static_cast<std::uint64_t>(on) << j;
        }
        return out;
    }
};

template <score_element Score, class Proj>
struct write_all_ties {
    word_bits<Score, Proj> in;
    std::uint64_t* words;
    CHILDTUNE_HD void operator()(std::uint64_t w) const { words[w] = in.template bits<compare_op::greater_equal>(w); }
};

template <score_element Score, class Proj>
struct count_ties {
    word_bits<Score, Proj> in;
    CHILDTUNE_HD std::uint64_t operator()(std::uint64_t w) const {
        return childtune::detail::popcount64(in.template bits<compare_op::equal>(w));
    }
};

//! Above the threshold, plus the ties of this word that still fit the budget
//! (`seen` ties precede the word in flattened order).
template <score_element Score, class Proj>
struct write_budgeted_ties {
    word_bits<Score, Proj> in;
    const std::uint64_t* seen;
    std::uint64_t budget;
    std::uint64_t* words;
    CHILDTUNE_HD void operator()(std::uint64_t w) const {
        std::uint64_t bits = in.template bits<compare_op::greater>(w);
        if (seen[w] < budget)
            bits |= childtune::detail::lowest_set_bits(in.template bits<compare_op::equal>(w), budget - seen[w]);
        words[w] = bits;
    }
};

struct word_popcount {
    CHILDTUNE_HD std::uint64_t operator()(std::uint64_t w) const { return childtune::detail::popcount64(w); }
};

//! Selection over validated tensors; scores are proj(stored score).
template <score_element Score, class Proj, class Policy>
device_top_p_result select_top_p(const Policy& policy, std::span<const device_scores<Score>> tensors, double p,
                                 selection_rule rule, const Proj& proj) {
    std::uint64_t n = 0;
    for (const auto& t : tensors) n += t.size;
    const auto select = [&](std::size_t k, bool want_next) {
        return detail::select_kth<Score>(policy, tensors, k, want_next, proj);
    };
    const auto cut = childtune::detail::make_top_p_cut<Score>(static_cast<std::size_t>(n), p, rule, select);

    std::vector<std::pair<std::string, std::uint64_t>> shape;
    for (const auto& t : tensors) shape.emplace_back(std::string(t.name), t.size);
    device_top_p_result result{device_mask_set(shape), static_cast<double>(cut.threshold), 0};
    device_mask_set& masks = result.masks;
    if (cut.keeps_nothing() || masks.word_count() == 0) return result;

    std::vector<mask_slot<Score>> slots;
    for (std::size_t t = 0; t < tensors.size(); ++t)
        if (tensors[t].size != 0) slots.push_back({tensors[t].scores, tensors[t].size, masks.entries()[t].first_word});
    const scratch<mask_slot<Score>, Policy> table(policy, slots.size(), "the selection's tensor table");
    copy_to_system(policy, slots.data(), slots.size(), table.get());
    const word_bits<Score, Proj> in{table.get(), static_cast<std::uint32_t>(slots.size()), proj, cut.threshold};
    const std::uint64_t words = masks.word_count();
    const ::thrust::counting_iterator<std::uint64_t> first(0), last(words);
    std::uint64_t* out = masks.words_data();
    if (cut.keep_all_ties) {
        ::thrust::for_each(policy, first, last, write_all_ties<Score, Proj>{in, out});
    } else {
        const scratch<std::uint64_t, Policy> seen(policy, words, "the selection's tie counts");
        ::thrust::transform(policy, first, last, seen.get(), count_ties<Score, Proj>{in});
        ::thrust::exclusive_scan(policy, seen.get(), seen.get() + words, seen.get());
        ::thrust::for_each(policy, first, last,
                           write_budgeted_ties<Score, Proj>{in, seen.get(), cut.tie_budget, out});
    }
    result.kept = ::thrust::transform_reduce(policy, out, out + words, word_popcount{}, std::uint64_t{0},
                                             ::thrust::plus<std::uint64_t>());
    return result;
}

} // namespace detail

//! Keeps the top p fraction of all scores of `tensors` taken together (one global
//! cut) and returns one bit mask per tensor in the system's memory: the same
//! masks, threshold and kept count as childtune::select_top_p on the same scores.
//! p in (0, 1], names unique and non-empty, at least one score, no NaN; scores
//! must be memory of the device system (checked unless `check` is off).
template <score_element Score, class Policy>
device_top_p_result select_top_p(const Policy& policy, std::span<const device_scores<Score>> tensors, double p,
                                 selection_rule rule = selection_rule::percentile,
                                 memory_check check = memory_check::on) {
    detail::require_device_policy<Policy>();
    std::vector<std::string_view> names;
    std::uint64_t total = 0;
    for (const auto& t : tensors) {
        names.push_back(t.name);
        total += t.size;
    }
    childtune::detail::check_top_p_input(names, p, static_cast<std::size_t>(total));
    for (const auto& t : tensors) {
        if (t.size == 0) continue;
        const auto context = [&] { return "top-p selection: tensor '" + std::string(t.name) + "'"; };
        if (!t.scores) childtune::detail::fail(context() + ": null score pointer");
        if (check == memory_check::on) detail::require_system_memory(t.scores, context, "the score array");
    }
    return detail::select_top_p<Score>(policy, tensors, p, rule, detail::identity_projection{});
}

//! The same for a container of device_scores.
template <score_element Score, class Policy>
device_top_p_result select_top_p(const Policy& policy, const std::vector<device_scores<Score>>& tensors, double p,
                                 selection_rule rule = selection_rule::percentile,
                                 memory_check check = memory_check::on) {
    return select_top_p<Score>(policy, std::span<const device_scores<Score>>(tensors), p, rule, check);
}

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
