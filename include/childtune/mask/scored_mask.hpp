#pragma once
//! \file
//! What gradient-driven mask policies (mask/magnitude.hpp,
//! mask/refreshed_fisher.hpp) hold between steps: the current masks, the scores
//! accumulated over the current window, and how much the last reselection
//! changed the mask (overlap, for logging). Values, shared between copies of a
//! policy and never changed in place, so `observe` builds the next policy
//! while the current one stays as it was (a rejected step changes nothing).

#include <childtune/error.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/gradient_reader.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune {

//! How one tensor's mask changed at a reselection: elements kept by the mask
//! before and after, and by both. `overlap()` is the share of the new mask's
//! kept elements that the old one kept too (1: unchanged; about p: unrelated).
struct mask_overlap {
    //! Tensor name.
    std::string name;
    //! Kept by the previous mask.
    std::size_t kept_before = 0;
    //! Kept by the new mask.
    std::size_t kept_now = 0;
    //! Kept by both.
    std::size_t kept_both = 0;
    //! kept_both / kept_now (1 when the new mask keeps nothing).
    double overlap() const { return kept_now == 0 ? 1.0 : static_cast<double>(kept_both) / static_cast<double>(kept_now); }
    //! Equal counts and name.
    friend bool operator==(const mask_overlap&, const mask_overlap&) = default;
};

//! The overlap of two masks of one tensor (equal sizes).
inline mask_overlap overlap_of(std::string name, const bit_mask& before, const bit_mask& now) {
    if (before.size() != now.size())
        detail::fail("mask overlap of tensor '" + name + "': masks of " + std::to_string(before.size()) + " and " +
                     std::to_string(now.size()) + " elements");
    mask_overlap o{std::move(name), before.count(), now.count(), 0};
    for (std::size_t w = 0; w < now.words().size(); ++w)
        o.kept_both += static_cast<std::size_t>(std::popcount(before.words()[w] & now.words()[w]));
    return o;
}

namespace detail {

//! Masks, window scores and the last overlaps of a gradient-driven policy.
struct scored_mask_state {
    //! The masks in force (empty: every tensor trains densely).
    std::shared_ptr<const mask_set> masks = std::make_shared<const mask_set>();
    //! Scores of the current window, by tensor name (empty outside a window).
    std::vector<std::string> score_names;
    std::vector<std::shared_ptr<const std::vector<float>>> scores;
    //! Overlap of each tensor's mask at the last reselection with the one before.
    std::vector<mask_overlap> last_overlap;
    //! Whether the masks apply (false: a dense phase).
    bool active = false;
    //! Steps observed, and reselections made.
    std::uint64_t observed = 0;
    std::uint64_t selections = 0;

    //! The view of tensor t: its mask when active and present, else dense.
    any_mask_view view(const tensor_info& t) const {
        if (active)
            if (const bit_mask* m = masks->find(t.name)) {
                if (m->size() != t.size)
                    fail("gradient-driven mask: the mask of tensor '" + std::string(t.name) + "' has " +
                         std::to_string(m->size()) + " elements, the tensor has " + std::to_string(t.size));
                return fixed_view(*m, t.offset);
            }
        return dense_view{};
    }

    //! Scores after adding f(g) of this step's gradients (element-wise, in
    //! order: s = s + f(g)); tensors new to the window start from zero.
    template <class F>
    void accumulate(const gradient_reader& g, F&& f) {
        std::vector<std::string> names;
        std::vector<std::shared_ptr<const std::vector<float>>> next;
        for (std::size_t k = 0; k < g.size(); ++k) {
            const auto values = g.values(k);
            const std::vector<float>* old = find_scores(g.info(k).name);
            auto s = std::make_shared<std::vector<float>>(values.size());
            if (old && old->size() == values.size())
                for (std::size_t i = 0; i < values.size(); ++i) (*s)[i] = (*old)[i] + f(values[i]);
            else
                for (std::size_t i = 0; i < values.size(); ++i) (*s)[i] = f(values[i]);
            names.emplace_back(g.info(k).name);
            next.push_back(std::move(s));
        }
        score_names = std::move(names);
        scores = std::move(next);
    }
    const std::vector<float>* find_scores(std::string_view name) const {
        for (std::size_t k = 0; k < score_names.size(); ++k)
            if (score_names[k] == name) return scores[k].get();
        return nullptr;
    }
    //! Drops the window's scores.
    void clear_scores() {
        score_names.clear();
        scores.clear();
    }
    //! Replaces the masks of the tensors in `next` (others keep theirs),
    //! recording the overlap of each with its old mask.
    void reselect(mask_set next) {
        last_overlap.clear();
        for (const auto& e : next.entries())
            if (const bit_mask* old = masks->find(e.name); old && old->size() == e.mask.size())
                last_overlap.push_back(overlap_of(e.name, *old, e.mask));
        for (const auto& e : masks->entries())
            if (!next.find(e.name)) next.add(e.name, e.mask);
        masks = std::make_shared<const mask_set>(std::move(next));
        ++selections;
    }

    void save(policy_writer& w) const {
        w.value(observed);
        w.value(selections);
        w.value<std::uint8_t>(active ? 1 : 0);
        w.value<std::uint64_t>(masks->tensor_count());
        for (const auto& e : masks->entries()) {
            w.string(e.name);
            w.value<std::uint64_t>(e.mask.size());
            w.array(e.mask.words());
        }
        w.value<std::uint64_t>(scores.size());
        for (std::size_t k = 0; k < scores.size(); ++k) {
            w.string(score_names[k]);
            w.array(std::span<const float>(*scores[k]));
        }
        w.value<std::uint64_t>(last_overlap.size());
        for (const auto& o : last_overlap) {
            w.string(o.name);
            w.value<std::uint64_t>(o.kept_before);
            w.value<std::uint64_t>(o.kept_now);
            w.value<std::uint64_t>(o.kept_both);
        }
    }
    static scored_mask_state load(policy_reader& r) {
        scored_mask_state s;
        s.observed = r.value<std::uint64_t>();
        s.selections = r.value<std::uint64_t>();
        s.active = r.value<std::uint8_t>() != 0;
        mask_set masks;
        const auto n = r.value<std::uint64_t>();
        for (std::uint64_t i = 0; i < n; ++i) {
            std::string name = r.string();
            const auto size = r.value<std::uint64_t>();
            auto words = r.array<std::uint64_t>();
            if (words.size() != bit_mask::word_count(static_cast<std::size_t>(size)))
                fail(r.what() + ": the mask of tensor '" + name + "' has " + std::to_string(words.size()) +
                     " words for " + std::to_string(size) + " elements (corrupt file?)");
            if (masks.find(name)) fail(r.what() + ": tensor '" + name + "' has two masks (corrupt file?)");
            masks.add(std::move(name), bit_mask(static_cast<std::size_t>(size), std::move(words)));
        }
        s.masks = std::make_shared<const mask_set>(std::move(masks));
        const auto m = r.value<std::uint64_t>();
        for (std::uint64_t i = 0; i < m; ++i) {
            s.score_names.push_back(r.string());
            s.scores.push_back(std::make_shared<const std::vector<float>>(r.array<float>()));
        }
        const auto o = r.value<std::uint64_t>();
        for (std::uint64_t i = 0; i < o; ++i) {
            mask_overlap x;
            x.name = r.string();
            x.kept_before = static_cast<std::size_t>(r.value<std::uint64_t>());
            x.kept_now = static_cast<std::size_t>(r.value<std::uint64_t>());
            x.kept_both = static_cast<std::size_t>(r.value<std::uint64_t>());
            s.last_overlap.push_back(std::move(x));
        }
        return s;
    }
    friend bool operator==(const scored_mask_state& a, const scored_mask_state& b) {
        if (a.observed != b.observed || a.selections != b.selections || a.active != b.active || !(*a.masks == *b.masks) || a.score_names != b.score_names ||
            a.last_overlap != b.last_overlap)
            return false;
        for (std::size_t k = 0; k < a.scores.size(); ++k)
            if (*a.scores[k] != *b.scores[k]) return false;
        return true;
    }
};

} // namespace detail
} // namespace childtune
