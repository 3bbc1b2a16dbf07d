#pragma once
//! \file
//! A named collection of bit masks covering a parameter set: what a Fisher
//! selection produces, what a user loads from disk, and what the optimizer's
//! fixed-mask mode consumes.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/integrity.hpp>
#include <childtune/mask/bit_mask.hpp>

#include <cstdint>
#include <fstream>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace childtune {

class mask_set;
namespace detail {
void write_mask_entries(binary_writer& w, const mask_set& set);
mask_set read_mask_entries(binary_reader& r);
} // namespace detail

//! Kept elements of one tensor of a mask set.
struct mask_summary {
    //! Tensor name.
    std::string name;
    //! Elements of the tensor.
    std::size_t size = 0;
    //! Elements kept.
    std::size_t kept = 0;
    //! kept / size (0 for an empty tensor).
    double kept_fraction() const { return size == 0 ? 0.0 : static_cast<double>(kept) / static_cast<double>(size); }
};

//! Masks keyed by tensor name. Tensors absent from the set are not covered by it:
//! the optimizer rejects a fixed-mask mode whose set misses a masked tensor or
//! disagrees with its size, which is how a mask built for a different parameter
//! set is caught.
class mask_set {
public:
    //! An empty set.
    mask_set() = default;
    //! A copy of every mask.
    mask_set(const mask_set&) = default;
    //! Takes the masks of `other`, which is left valid but unspecified.
    mask_set(mask_set&& other) noexcept = default;
    //! Replaces the masks with copies of `other`'s.
    mask_set& operator=(const mask_set& other) = default;
    //! Replaces the masks with `other`'s, which is left valid but unspecified.
    mask_set& operator=(mask_set&& other) noexcept = default;
    //! Out of line: GCC 12 at -O3 inlines the destructor of a mask_mode
    //! (std::variant<dense, bernoulli, fixed>) through every alternative and, when
    //! the variant holds another one, can warn -Wmaybe-uninitialized on this
    //! set's members (a false positive that depends on the caller's inlining, and
    //! breaks users' -Werror builds that construct group options in place).
    CHILDTUNE_NOINLINE ~mask_set() = default;

    //! One tensor's mask.
    struct entry {
        //! Tensor name (the optimizer's registration name).
        std::string name;
        //! Its packed keep bits.
        bit_mask mask;
    };

    //! Adds the mask of tensor `name`; a name may appear once.
    void add(std::string name, bit_mask mask) {
        if (name.empty()) detail::fail("mask_set: a tensor name must not be empty");
        if (index_.contains(name)) detail::fail("mask_set: tensor '" + name + "' added twice");
        index_.emplace(name, entries_.size());
        entries_.push_back({std::move(name), std::move(mask)});
    }
    //! The mask of tensor `name`, or null when the set has none.
    const bit_mask* find(std::string_view name) const {
        auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &entries_[it->second].mask;
    }
    //! All masks, in insertion order.
    const std::vector<entry>& entries() const { return entries_; }
    //! Number of tensors in the set.
    std::size_t tensor_count() const { return entries_.size(); }
    //! Whether the set holds no mask.
    bool empty() const { return entries_.empty(); }

    //! Elements over all tensors.
    std::size_t total_size() const {
        std::size_t n = 0;
        for (const auto& e : entries_) n += e.mask.size();
        return n;
    }
    //! Kept elements over all tensors.
    std::size_t total_kept() const {
        std::size_t n = 0;
        for (const auto& e : entries_) n += e.mask.count();
        return n;
    }
    //! Kept count and fraction per tensor, in insertion order.
    std::vector<mask_summary> summary() const {
        std::vector<mask_summary> out;
        out.reserve(entries_.size());
        for (const auto& e : entries_) out.push_back({e.name, e.mask.size(), e.mask.count()});
        return out;
    }

    //! Versioned binary format: magic, version, tensor count, then per tensor its
    //! name, size and packed words, then a checksum.
    void save(std::ostream& out) const {
        detail::binary_writer w(out);
        w.header(magic, format_version);
        detail::write_mask_entries(w, *this);
        w.finish();
    }
    //! Reads a set written by save(); throws childtune::error on a truncated,
    //! corrupt or foreign file.
    static mask_set load(std::istream& in) {
        detail::verified_input verified(in, "mask file", magic);
        detail::binary_reader r(verified.stream(), "mask file");
        r.header(magic, format_version);
        mask_set set = detail::read_mask_entries(r);
        r.finish_file();
        return set;
    }
    //! Saves to `path` crash-safely (io/atomic_file.hpp).
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "mask file", [&](std::ostream& out) { save(out); });
    }
    //! Loads from `path` (see load(std::istream&)); throws childtune::error when the
    //! file cannot be opened.
    static mask_set load(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) detail::fail("cannot open mask file '" + path + "'");
        return load(in);
    }

    //! Equal when the same names hold the same bits in the same order.
    friend bool operator==(const mask_set& a, const mask_set& b) {
        if (a.entries_.size() != b.entries_.size()) return false;
        for (std::size_t i = 0; i < a.entries_.size(); ++i)
            if (a.entries_[i].name != b.entries_[i].name || !(a.entries_[i].mask == b.entries_[i].mask)) return false;
        return true;
    }

private:
    static constexpr std::string_view magic{"CTMASK\0\1", 8};
    static constexpr std::uint32_t format_version = 1;
    std::vector<entry> entries_;
    std::unordered_map<std::string, std::size_t> index_;
};

namespace detail {
//! The entries of a mask set: count, then name, size and packed words of each.
//! Shared by the mask file and the optimizer state file.
inline void write_mask_entries(binary_writer& w, const mask_set& set) {
    w.value<std::uint64_t>(set.tensor_count());
    for (const auto& e : set.entries()) {
        w.string(e.name);
        w.value<std::uint64_t>(e.mask.size());
        w.array(e.mask.words());
    }
}
inline mask_set read_mask_entries(binary_reader& r) {
    const auto count = r.value<std::uint64_t>();
    mask_set set;
    for (std::uint64_t i = 0; i < count; ++i) {
        std::string name = r.string();
        const auto size = r.value<std::uint64_t>();
        if (size > (std::uint64_t{1} << 56)) fail(r.what() + ": tensor '" + name + "' claims an impossible size");
        auto words = r.array_untrusted<std::uint64_t>((size + 63) / 64);
        const auto padding = size % 64;
        if (padding != 0 && (words.back() >> padding) != 0)
            fail(r.what() + " is corrupt: tensor '" + name + "' has bits set past its end");
        if (name.empty() || set.find(name)) fail(r.what() + " is corrupt: tensor name '" + name + "' is empty or repeated");
        set.add(std::move(name), bit_mask(static_cast<std::size_t>(size), std::move(words)));
    }
    return set;
}
} // namespace detail

} // namespace childtune
