#pragma once
//! \file
//! Masks made outside childtune: a bit_mask from one keep decision per element
//! (bool, or 0/1 numbers) or from packed bits, checked element by element.
//!
//! A FISH mask (Sung et al. 2021) or a mask from another tool arrives as data:
//! a bool tensor, a 0/1 float tensor, a `numpy.packbits` array. A value other
//! than 0 or 1 (0.5, 2, NaN) means the data is not a mask (scores passed by
//! mistake, a mask already rescaled by 1/p) and is refused naming the tensor,
//! the element and the value, instead of being read as "kept". The adapters
//! (Eigen, LibTorch, Thrust) turn their tensor types into these spans.

#include <childtune/error.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/numeric/half.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace childtune {

namespace detail {
//! The value as an error message prints it.
template <class T>
std::string mask_value_text(T v) {
    if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>) return format_number(widen<double>(v));
    else if constexpr (std::is_same_v<T, char> || std::is_same_v<T, signed char> || std::is_same_v<T, unsigned char>)
        return std::to_string(static_cast<int>(v));
    else return format_number(v);
}
//! 0 -> false, 1 -> true, anything else (NaN included) -> error naming the element.
template <class T>
bool mask_bit(std::string_view tensor, std::size_t i, T v) {
    if constexpr (std::is_same_v<T, bool>) {
        return v;
    } else {
        bool one, zero;
        if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>) {
            const double d = widen<double>(v); // exact
            one = d == 1.0;
            zero = d == 0.0;
        } else {
            one = v == static_cast<T>(1);
            zero = v == static_cast<T>(0);
        }
        if (one) return true;
        if (zero) return false;
        fail("mask from values: tensor '" + std::string(tensor) + "', element " + std::to_string(i) + " is " +
             mask_value_text(v) + "; a mask holds only 0 (masked out) and 1 (kept)");
    }
}
//! "packed bits": `count` units cannot hold `size` bits, or a bit past `size` is set.
inline void check_packed(std::string_view tensor, std::size_t size, std::size_t count, std::size_t needed,
                         const char* unit) {
    if (count != needed)
        fail("mask from packed bits: tensor '" + std::string(tensor) + "' has " + std::to_string(size) + " elements, which need " +
             std::to_string(needed) + " " + unit + ", but " + std::to_string(count) + " were given");
}
} // namespace detail

//! Element types mask_from_values accepts: bool, integers, floating point
//! (float, double, bfloat16, float16).
template <class T>
concept mask_value = std::is_same_v<T, bool> || std::is_integral_v<T> || std::is_floating_point_v<T> ||
                     std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>;

//! A bit_mask from one decision per element: element i is kept when values[i]
//! is true or 1, masked out when false or 0. Any other value (0.5, 2, -1, NaN,
//! -0.0 is 0) throws childtune::error naming `tensor`, the element and the value.
template <mask_value T>
bit_mask mask_from_values(std::string_view tensor, std::span<const T> values) {
    bit_mask m(values.size());
    auto words = m.words();
    for (std::size_t w = 0; w < words.size(); ++w) {
        std::uint64_t bits = 0;
        const std::size_t first = w * 64, n = std::min<std::size_t>(64, values.size() - first);
        for (std::size_t j = 0; j < n; ++j)
            bits |= std::uint64_t{detail::mask_bit(tensor, first + j, values[first + j])} << j;
        words[w] = bits;
    }
    return m;
}
//! Any contiguous range of mask values (std::vector<float>, std::array<bool, N>...).
template <std::ranges::contiguous_range R>
    requires std::ranges::sized_range<R> && mask_value<std::remove_cvref_t<std::ranges::range_reference_t<R>>>
bit_mask mask_from_values(std::string_view tensor, const R& values) {
    using T = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    return mask_from_values(tensor, std::span<const T>(std::ranges::data(values), std::ranges::size(values)));
}
//! std::vector<bool> is not contiguous: read element by element.
inline bit_mask mask_from_values(std::string_view /*tensor*/, const std::vector<bool>& values) {
    bit_mask m(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) m.set(i, values[i]);
    return m;
}

//! A bit_mask of `size` elements from 64-bit words in childtune's layout (bit i
//! of word i/64, least significant first: bit_mask::words()). Throws naming
//! `tensor` when the word count is not ceil(size/64) or a bit past `size` is set
//! (the words were packed for another size).
inline bit_mask mask_from_words(std::string_view tensor, std::size_t size, std::span<const std::uint64_t> words) {
    detail::check_packed(tensor, size, words.size(), bit_mask::word_count(size), "64-bit words");
    if (size % 64 != 0 && (words.back() >> (size % 64)) != 0)
        detail::fail("mask from packed bits: tensor '" + std::string(tensor) + "' has bits set past its " +
                     std::to_string(size) + " elements (packed for another size?)");
    return bit_mask(size, std::vector<std::uint64_t>(words.begin(), words.end()));
}

//! A bit_mask of `size` elements from bytes packed as
//! `numpy.packbits(mask, bitorder='little')` writes them: bit j of byte i (least
//! significant first) is element 8i + j. Throws naming `tensor` when the byte
//! count is not ceil(size/8) or a bit past `size` is set. (numpy's default
//! bitorder='big' puts element 8i in the most significant bit: pass
//! bitorder='little', or the mask would be silently permuted within each byte.)
inline bit_mask mask_from_packed_bytes(std::string_view tensor, std::size_t size, std::span<const std::uint8_t> bytes) {
    detail::check_packed(tensor, size, bytes.size(), size / 8 + (size % 8 != 0 ? 1 : 0), "bytes");
    if (size % 8 != 0 && (bytes.back() >> (size % 8)) != 0)
        detail::fail("mask from packed bits: tensor '" + std::string(tensor) + "' has bits set past its " +
                     std::to_string(size) + " elements (packed for another size, or with bitorder='big'?)");
    std::vector<std::uint64_t> words(bit_mask::word_count(size), 0);
    for (std::size_t i = 0; i < bytes.size(); ++i) words[i / 8] |= std::uint64_t{bytes[i]} << (8 * (i % 8));
    return bit_mask(size, std::move(words));
}

//! A mask_set from (name, values) pairs, in order: each entry through
//! mask_from_values (errors name the tensor), names checked by mask_set::add.
template <class Values>
mask_set mask_set_from_values(const std::vector<std::pair<std::string, Values>>& tensors) {
    mask_set set;
    for (const auto& [name, values] : tensors) set.add(name, mask_from_values(name, values));
    return set;
}

} // namespace childtune
