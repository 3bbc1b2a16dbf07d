#pragma once
//! \file
//! Bit-packed masks in a Thrust system's memory, one per named tensor: what the
//! device top-p selection returns and what the device step's fixed_view reads.
//! The words of all tensors live in one allocation; each tensor starts at a word
//! of its own, so its view is the core's fixed_view over device words, and the
//! layout of each tensor's words is the host bit_mask's (bit i of word i/64).

#include <childtune/error.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/device_vector.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! Child-Tuning_D masks in a Thrust system's memory: one bit per element, the
//! words of all tensors in one device_vector. A mask_policy itself, so it can
//! mask groups of childtune::thrust::optimizer without a copy to the host.
class device_mask_set {
public:
    //! One tensor's mask: its name, size and first word.
    struct entry {
        //! Tensor name.
        std::string name;
        std::uint64_t size = 0;       //!< elements of the tensor
        std::uint64_t first_word = 0; //!< where its words start in words()
    };

    device_mask_set() = default;

    //! An all-zero set for tensors of these names and sizes, in this order.
    explicit device_mask_set(const std::vector<std::pair<std::string, std::uint64_t>>& tensors) {
        std::uint64_t words = 0;
        for (const auto& [name, size] : tensors) {
            if (name.empty()) childtune::detail::fail("device_mask_set: a tensor name must not be empty");
            // (size + 63) / 64 wraps to 0 words near 2^64; no tensor of the
            // smallest element type (2 bytes) can be that large anyway.
            if (size > childtune::detail::max_tensor_elements<bfloat16>)
                childtune::detail::fail("device_mask_set: tensor '" + name + "' claims " + std::to_string(size) +
                                        " elements, more than the address space holds");
            if (!index_.emplace(name, entries_.size()).second)
                childtune::detail::fail("device_mask_set: tensor '" + name + "' added twice");
            entries_.push_back({name, size, words});
            words += bit_mask::word_count(size);
        }
        words_.assign(words, 0);
    }

    //! The masks of a host mask_set (selected or loaded on the CPU), copied to
    //! the system's memory on `policy`'s stream.
    template <class Policy>
    static device_mask_set upload(const Policy& policy, const mask_set& masks) {
        detail::require_device_policy<Policy>();
        std::vector<std::pair<std::string, std::uint64_t>> shape;
        for (const auto& e : masks.entries()) shape.emplace_back(e.name, e.mask.size());
        device_mask_set out(shape);
        for (std::size_t t = 0; t < out.entries_.size(); ++t) {
            const auto words = masks.entries()[t].mask.words();
            detail::copy_to_system(policy, words.data(), words.size(), out.words_data() + out.entries_[t].first_word);
        }
        return out;
    }

    //! The masks on the host, for saving or for the CPU path.
    template <class Policy>
    mask_set download(const Policy& policy) const {
        detail::require_device_policy<Policy>();
        mask_set out;
        for (const auto& e : entries_) {
            std::vector<std::uint64_t> words((e.size + 63) / 64);
            detail::copy_to_host(policy, words_data() + e.first_word, words.size(), words.data());
            out.add(e.name, bit_mask(e.size, std::move(words)));
        }
        return out;
    }

    //! The step's view of tensor `name`, or an error naming it when the set has
    //! no such tensor or its size is not `expected_size`.
    fixed_view view(std::string_view name, std::uint64_t expected_size) const {
        const entry& e = find(name);
        if (e.size != expected_size)
            childtune::detail::fail("device_mask_set: mask of tensor '" + e.name + "' has " + std::to_string(e.size) +
                                    " elements, the tensor has " + std::to_string(expected_size));
        return fixed_view(words_data() + e.first_word, e.size, 0);
    }

    // ---- as a mask policy (concepts.hpp): a Child-Tuning_D mask on the device ----

    //! Nothing to check: the masks are checked against the tensors (check_tensors).
    void validate() const {}
    //! The mask of tensor `t`, read at its offset.
    fixed_view view(const tensor_info& t, std::uint64_t /*step*/) const {
        const fixed_view whole = view(t.name, t.size);
        return fixed_view(whole.words(), whole.mask_size(), t.offset);
    }
    //! Every tensor using the set has its mask, and the set has no other.
    void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const {
        for (const auto& t : users) (void)view(t.name, t.size);
        std::vector<std::string_view> names;
        for (const auto& e : entries_) names.push_back(e.name);
        childtune::detail::check_no_foreign_masks(names, users, registered);
    }

    //! The entry of tensor `name`; throws childtune::error when the set has none.
    const entry& find(std::string_view name) const {
        const auto it = index_.find(std::string(name));
        if (it == index_.end())
            childtune::detail::fail("device_mask_set: no mask for tensor '" + std::string(name) + "'");
        return entries_[it->second];
    }
    //! All entries, in the order given.
    const std::vector<entry>& entries() const { return entries_; }
    //! Number of tensors in the set.
    std::size_t tensor_count() const { return entries_.size(); }
    //! Words over all tensors.
    std::uint64_t word_count() const { return words_.size(); }
    //! All words, tensor after tensor, in the system's memory.
    std::uint64_t* words_data() { return ::thrust::raw_pointer_cast(words_.data()); }
    //! All words, tensor after tensor, in the system's memory.
    const std::uint64_t* words_data() const { return ::thrust::raw_pointer_cast(words_.data()); }

private:
    std::vector<entry> entries_;
    std::unordered_map<std::string, std::size_t> index_;
    ::thrust::device_vector<std::uint64_t> words_;
};

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
