#pragma once
//! \file
//! Bit-packed fixed masks: one bit per parameter.
//!
//! A Child-Tuning_D mask (Xu et al. 2021, §2.2) never changes during training, so
//! it is stored at 1 bit per parameter (1/32 of the float mask the reference keeps)
//! and read by the fused step 64 elements at a time.

#include <childtune/config.hpp>
#include <childtune/error.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace childtune {

//! A mask over `size()` elements; bit i of word i/64 (least significant first)
//! says whether element i is kept (trained). Bits past `size()` are always zero.
class bit_mask {
public:
    bit_mask() = default;
    //! `size` elements, all kept (`value` true) or all masked out.
    explicit bit_mask(std::size_t size, bool value = false)
        : words_(word_count(size), value ? ~std::uint64_t{0} : 0), size_(size) {
        clear_padding();
    }
    //! Adopts packed words; `words.size()` must be ceil(size/64). Padding bits are cleared.
    bit_mask(std::size_t size, std::vector<std::uint64_t> words) : words_(std::move(words)), size_(size) {
        if (words_.size() != word_count(size))
            detail::fail("bit_mask: " + std::to_string(words_.size()) + " words cannot hold " +
                         std::to_string(size) + " bits");
        clear_padding();
    }

    //! Words that hold `size` bits: ceil(size/64), without the wrap of
    //! (size + 63) / 64 for sizes near SIZE_MAX (which gave 0 words, so a mask
    //! claiming 2^64 - 1 elements with no storage was accepted).
    static constexpr std::size_t word_count(std::size_t size) { return size / 64 + (size % 64 != 0 ? 1 : 0); }

    //! Number of elements.
    std::size_t size() const { return size_; }
    //! Whether element `i` is kept; unchecked.
    bool test(std::size_t i) const { return (words_[i >> 6] >> (i & 63)) & 1u; }
    //! Keeps (or masks out) element `i`; unchecked.
    void set(std::size_t i, bool value = true) {
        const std::uint64_t bit = std::uint64_t{1} << (i & 63);
        words_[i >> 6] = value ? (words_[i >> 6] | bit) : (words_[i >> 6] & ~bit);
    }
    //! Number of kept elements.
    std::size_t count() const {
        std::size_t n = 0;
        for (auto w : words_) n += static_cast<std::size_t>(std::popcount(w));
        return n;
    }
    //! count() / size() (0 for an empty mask).
    double kept_fraction() const { return size_ == 0 ? 0.0 : static_cast<double>(count()) / static_cast<double>(size_); }

    //! The packed words, ceil(size/64) of them.
    std::span<const std::uint64_t> words() const { return words_; }
    //! The packed words, writable; bits past size() must stay zero.
    std::span<std::uint64_t> words() { return words_; }

    //! Equal sizes and bits.
    friend bool operator==(const bit_mask&, const bit_mask&) = default;

private:
    void clear_padding() {
        if (size_ % 64 != 0 && !words_.empty()) words_.back() &= (std::uint64_t{1} << (size_ % 64)) - 1;
    }
    std::vector<std::uint64_t> words_;
    std::size_t size_ = 0;
};

} // namespace childtune
