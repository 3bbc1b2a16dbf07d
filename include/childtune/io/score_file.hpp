#pragma once
//! \file
//! Named score tensors on disk: Fisher scores computed once and reused.
//!
//! FISH (Sung et al. 2021, "Training Neural Networks with Fixed Sparse Masks")
//! computes Fisher scores once and reuses them across runs and machines; with
//! the scores saved, a mask of another keep fraction p (or another selection
//! rule) is one select_top_p away, without another pass over the data. The
//! file is checksummed and versioned like the mask file (docs/guides/mask-files.md
//! gives it byte by byte): magic `CTSCOR\0\1`, version, element width (4:
//! float, 8: double), tensor count, then per tensor its name, size and values.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/integrity.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/select/top_p.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace childtune {

//! Score tensors keyed by name, in insertion order, of one score type (float
//! or double): what a scores file holds.
template <score_element Score>
class score_set {
public:
    //! One tensor's scores.
    struct entry {
        //! Tensor name.
        std::string name;
        //! One score per element.
        std::vector<Score> scores;
    };

    //! Adds the scores of tensor `name`; a name may appear once and must not be empty.
    void add(std::string name, std::vector<Score> scores) {
        if (name.empty()) detail::fail("score_set: a tensor name must not be empty");
        if (index_.contains(name)) detail::fail("score_set: tensor '" + name + "' added twice");
        index_.emplace(name, entries_.size());
        entries_.push_back({std::move(name), std::move(scores)});
    }
    //! The scores of tensor `name`, or null when the set has none.
    const std::vector<Score>* find(std::string_view name) const {
        auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &entries_[it->second].scores;
    }
    //! All tensors, in insertion order.
    const std::vector<entry>& entries() const { return entries_; }
    //! Number of tensors.
    std::size_t tensor_count() const { return entries_.size(); }

    //! The tensors as select_top_p takes them (views into this set): e.g.
    //! `select_top_p(scores.named(), 0.3)` for the Child-Tuning_D mask at p = 0.3.
    std::vector<named_scores<Score>> named() const {
        std::vector<named_scores<Score>> out;
        for (const auto& e : entries_) out.push_back({e.name, std::span<const Score>(e.scores)});
        return out;
    }

    //! Writes the scores file (format in the file comment).
    void save(std::ostream& out) const {
        detail::binary_writer w(out);
        w.header(magic, format_version);
        w.value<std::uint32_t>(sizeof(Score));
        w.value<std::uint64_t>(entries_.size());
        for (const auto& e : entries_) {
            w.string(e.name);
            w.value<std::uint64_t>(e.scores.size());
            w.array(std::span<const Score>(e.scores));
        }
        w.finish();
    }
    //! Reads a file written by save() for the same score type; throws
    //! childtune::error on a truncated, corrupt or foreign file, or one of the
    //! other score type (naming both).
    static score_set load(std::istream& in) {
        detail::verified_input verified(in, "scores file", magic);
        detail::binary_reader r(verified.stream(), "scores file");
        r.header(magic, format_version);
        const auto width = r.value<std::uint32_t>();
        if (width != 4 && width != 8) detail::fail("scores file is corrupt: scores of " + std::to_string(width) + " bytes");
        if (width != sizeof(Score))
            detail::fail(std::string("scores file holds ") + (width == 4 ? "float" : "double") + " scores; load it as score_set<" +
                         (width == 4 ? "float" : "double") + ">, not score_set<" + (sizeof(Score) == 4 ? "float" : "double") + ">");
        const auto count = r.value<std::uint64_t>();
        score_set set;
        for (std::uint64_t i = 0; i < count; ++i) {
            std::string name = r.string();
            if (name.empty() || set.find(name)) detail::fail("scores file is corrupt: tensor name '" + name + "' is empty or repeated");
            const auto size = r.value<std::uint64_t>();
            if (size > detail::max_tensor_elements<Score>)
                detail::fail("scores file: tensor '" + name + "' claims an impossible size (" + std::to_string(size) + ")");
            set.add(std::move(name), r.array_untrusted<Score>(size));
        }
        r.finish_file();
        return set;
    }
    //! Saves to `path` crash-safely (io/atomic_file.hpp).
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "scores file", [&](std::ostream& out) { save(out); });
    }
    //! Loads from `path`; throws childtune::error when it cannot be opened.
    static score_set load(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) detail::fail("cannot open scores file '" + path + "'");
        return load(in);
    }

    //! Same names, in the same order, with bitwise-equal scores (NaN equals itself).
    friend bool operator==(const score_set& a, const score_set& b) {
        if (a.entries_.size() != b.entries_.size()) return false;
        for (std::size_t i = 0; i < a.entries_.size(); ++i) {
            const auto& x = a.entries_[i];
            const auto& y = b.entries_[i];
            if (x.name != y.name || x.scores.size() != y.scores.size()) return false;
            if (!x.scores.empty() && std::memcmp(x.scores.data(), y.scores.data(), x.scores.size() * sizeof(Score)) != 0)
                return false;
        }
        return true;
    }

private:
    static constexpr std::string_view magic{"CTSCOR\0\1", 8};
    static constexpr std::uint32_t format_version = 1;
    std::vector<entry> entries_;
    std::unordered_map<std::string, std::size_t> index_;
};

//! The Fisher scores of every tensor of `fisher`, in registration order (as
//! fisher_accumulator::scores reads them: divided by the batch count when N was
//! not declared), ready to save.
template <score_element Score>
score_set<Score> scores_of(const fisher_accumulator<Score>& fisher) {
    score_set<Score> set;
    for (auto& name : fisher.names()) {
        auto s = fisher.scores(name);
        set.add(std::move(name), std::move(s));
    }
    return set;
}

} // namespace childtune
