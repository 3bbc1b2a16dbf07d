#pragma once
//! \file
//! A fixed mask supplied as bits: the Child-Tuning_D mask selected from Fisher
//! scores (Xu et al. 2021, §2.2), a FISH mask, or any mask loaded from disk.
//! No scaling: the reference multiplies by the 0/1 mask only.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <cstdint>

namespace childtune {

namespace detail {
//! A set of named masks (`names`) used by the tensors `users` must have no mask
//! for any other tensor: it names a tensor that is not registered, or one that
//! is trained densely or under another policy.
inline void check_no_foreign_masks(std::span<const std::string_view> names, std::span<const tensor_info> users,
                                   std::span<const tensor_info> registered) {
    if (names.size() == users.size()) return;
    for (const auto name : names) {
        const auto find = [&](std::span<const tensor_info> ts) -> const tensor_info* {
            for (const auto& t : ts)
                if (t.name == name) return &t;
            return nullptr;
        };
        if (find(users)) continue;
        const tensor_info* other = find(registered);
        if (!other) fail("fixed mask: tensor '" + std::string(name) + "' is not registered (mask built for a different parameter set?)");
        if (!other->group_masked)
            fail("fixed mask: tensor '" + std::string(name) + "' is in unmasked group '" + std::string(other->group_name) + "'");
        fail("fixed mask: tensor '" + std::string(name) + "' is in group '" + std::string(other->group_name) +
             "', which has a mask policy of its own");
    }
}
} // namespace detail

//! Keep decisions read from packed words; `offset` is the index of the view's
//! first element in the mask (for shards).
class fixed_view {
public:
    //! Not known to be dense at compile time.
    static constexpr bool is_dense = false;

    fixed_view() = default;
    //! A view of `size` mask bits packed in `words` (bit i of word i/64), starting at
    //! element `offset`; the words must outlive the view.
    fixed_view(const std::uint64_t* words, std::uint64_t size, std::uint64_t offset)
        : words_(words), size_(size), offset_(offset) {}
    //! A view of a bit_mask, starting at element `offset`.
    explicit fixed_view(const bit_mask& m, std::uint64_t offset = 0) : fixed_view(m.words().data(), m.size(), offset) {}

    //! Whether element `i` (counted from the view's offset) is kept.
    CHILDTUNE_HD bool keep(std::uint64_t i) const {
        const std::uint64_t e = i + offset_;
        return (words_[e >> 6] >> (e & 63)) & 1u;
    }
    //! Decisions of elements i, i + 16, ..., i + 112 as bits 0..7 (the eight a
    //! thread of the Thrust adapter steps), from the at most three words they
    //! span; elements past the mask's end read 0 (no word past it is read).
    CHILDTUNE_HD unsigned keep_octet(std::uint64_t i) const {
        const std::uint64_t e = i + offset_, w = e >> 6, words = (size_ + 63) / 64;
        const unsigned shift = static_cast<unsigned>(e & 63);
        const std::uint64_t a = w < words ? words_[w] : 0, b = w + 1 < words ? words_[w + 1] : 0,
                            c = w + 2 < words ? words_[w + 2] : 0;
        // Bits e .. e + 127 of the mask as two words.
        const std::uint64_t low = shift == 0 ? a : (a >> shift) | (b << (64 - shift));
        const std::uint64_t high = shift == 0 ? b : (b >> shift) | (c << (64 - shift));
        unsigned bits = 0;
        for (unsigned k = 0; k < 4; ++k) {
            bits |= static_cast<unsigned>((low >> (16 * k)) & 1u) << k;
            bits |= static_cast<unsigned>((high >> (16 * k)) & 1u) << (k + 4);
        }
        return bits;
    }
    //! Keep bits of elements [first, first + 64); bits past the mask's end read 0.
    std::uint64_t bits64(std::uint64_t first) const {
        const std::uint64_t e = first + offset_, w = e >> 6, n = (size_ + 63) / 64;
        const unsigned shift = static_cast<unsigned>(e & 63);
        if (w >= n) return 0;
        std::uint64_t bits = words_[w] >> shift;
        if (shift != 0 && w + 1 < n) bits |= words_[w + 1] << (64 - shift);
        return bits;
    }
    //! 1: a fixed mask does not rescale kept gradients.
    CHILDTUNE_HD double keep_probability() const { return 1.0; }
    //! Elements of the whole mask, and where this view starts in it.
    std::uint64_t mask_size() const { return size_; }
    //! Index of the view's first element in the mask.
    std::uint64_t offset() const { return offset_; }
    //! The packed words of the whole mask.
    const std::uint64_t* words() const { return words_; }

private:
    const std::uint64_t* words_ = nullptr;
    std::uint64_t size_ = 0;
    std::uint64_t offset_ = 0;
};

//! Fixed-mask policy: the named masks of a parameter set. Every masked tensor must
//! have a mask of its size in the set (the optimizer checks when the mode is set).
struct fixed {
    //! The masks, one per masked tensor, by name.
    mask_set masks;

    //! Nothing to check: the masks are checked against the tensors (check_tensors).
    void validate() const {}
    //! The view of tensor `name` or an error naming it.
    fixed_view view(std::string_view name, std::uint64_t expected_size, std::uint64_t offset = 0) const {
        const bit_mask* m = masks.find(name);
        if (!m) detail::fail("fixed mask: no mask for tensor '" + std::string(name) + "' (built for a different parameter set?)");
        if (m->size() != expected_size)
            detail::fail("fixed mask: mask of tensor '" + std::string(name) + "' has " + std::to_string(m->size()) +
                         " elements, the tensor has " + std::to_string(expected_size));
        return fixed_view(*m, offset);
    }
    //! The mask_policy form: the mask of tensor `t`, read at its offset.
    fixed_view view(const tensor_info& t, std::uint64_t /*step*/) const { return view(t.name, t.size, t.offset); }

    //! The set must hold a mask of the right size for every tensor that uses it
    //! (`users`), and no mask for any other tensor: a mask built for another
    //! parameter set is caught by name and size.
    void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const {
        for (const auto& t : users) (void)view(t.name, t.size);
        std::vector<std::string_view> names;
        for (const auto& e : masks.entries()) names.push_back(e.name);
        detail::check_no_foreign_masks(names, users, registered);
    }
    //! Equal when the mask sets are.
    friend bool operator==(const fixed&, const fixed&) = default;
};

} // namespace childtune
