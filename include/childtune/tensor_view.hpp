#pragma once
//! \file
//! Rank-1 contiguous views: the only shape the core ever sees.
//!
//! Every step of Child-Tuning is element-wise, so shapes stay in the adapters
//! (Eigen, LibTorch, Thrust) and the core works on `data()` + `size()`.

#include <childtune/concepts.hpp>
#include <childtune/numeric/half.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string_view>
#include <type_traits>

namespace childtune {

//! Run-time tag of a parameter element type; its numeric value is part of the
//! state-file format and must never change.
enum class dtype : std::uint8_t { float32 = 1, float64 = 2, bfloat16 = 3, float16 = 4 };

//! The dtype tag of element type T.
template <parameter_element T>
inline constexpr dtype dtype_of = std::same_as<T, float>    ? dtype::float32
                                  : std::same_as<T, double> ? dtype::float64
                                  : std::same_as<T, bfloat16> ? dtype::bfloat16
                                                              : dtype::float16;

//! The dtype's name as error messages print it ("float32", ...).
constexpr std::string_view dtype_name(dtype t) {
    switch (t) {
    case dtype::float32: return "float32";
    case dtype::float64: return "float64";
    case dtype::bfloat16: return "bfloat16";
    case dtype::float16: return "float16";
    }
    return "unknown dtype";
}

//! Whether `t` is one of the four tags (a byte read from a file may not be).
constexpr bool is_valid(dtype t) { return t >= dtype::float32 && t <= dtype::float16; }

namespace detail {
//! The most elements of T one tensor can have: its bytes must fit in
//! std::ptrdiff_t, or pointer differences and byte counts over it overflow. No
//! real allocation is that large, so a bigger size is a corrupt or made-up
//! view, rejected before any index arithmetic can wrap.
template <class T>
inline constexpr std::size_t max_tensor_elements =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) / sizeof(T);

//! Whether the byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte.
//! Compared as integers: the views may be fake or belong to different
//! allocations, where pointer arithmetic and ordering would be undefined.
inline bool ranges_overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
    if (a_bytes == 0 || b_bytes == 0) return false;
    const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
    return x < y ? y - x < a_bytes : x - y < b_bytes;
}
} // namespace detail

//! A non-owning view of `size()` contiguous elements of type T (possibly const).
//! Models `std::ranges::contiguous_range`, so a view is itself a tensor.
template <class T>
    requires parameter_element<std::remove_const_t<T>>
class tensor_view {
public:
    //! T as given (const for gradient views).
    using element_type = T;
    //! T without const.
    using value_type = std::remove_const_t<T>;

    constexpr tensor_view() = default;
    //! `size` elements starting at `data` (null with size 0 is an empty view).
    CHILDTUNE_HD constexpr tensor_view(T* data, std::size_t size) : data_(data), size_(size) {}
    //! Any contiguous sized range of a parameter element type (std::vector,
    //! std::array, std::span, another view).
    template <std::ranges::contiguous_range R>
        requires std::ranges::sized_range<R> &&
                 std::convertible_to<std::remove_reference_t<std::ranges::range_reference_t<R>> (*)[], T (*)[]>
    constexpr tensor_view(R&& r) : data_(std::ranges::data(r)), size_(std::ranges::size(r)) {}

    //! First element.
    CHILDTUNE_HD constexpr T* data() const { return data_; }
    //! Number of elements.
    CHILDTUNE_HD constexpr std::size_t size() const { return size_; }
    //! Whether the view has no elements.
    CHILDTUNE_HD constexpr bool empty() const { return size_ == 0; }
    //! Element `i`, unchecked.
    CHILDTUNE_HD constexpr T& operator[](std::size_t i) const { return data_[i]; }
    //! Start of the range (views are ranges).
    constexpr T* begin() const { return data_; }
    //! One past the last element.
    constexpr T* end() const { return data_ + size_; }
    //! Elements [offset, offset + count); the caller keeps it in range.
    CHILDTUNE_HD constexpr tensor_view subview(std::size_t offset, std::size_t count) const {
        return {data_ + offset, count};
    }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

//! Deduces the element type from a container: `tensor_view(vec)`.
template <std::ranges::contiguous_range R>
tensor_view(R&&) -> tensor_view<std::remove_reference_t<std::ranges::range_reference_t<R>>>;

//! A tensor view whose element type is known only at run time; how the
//! optimizer stores parameters of mixed precision side by side.
struct any_tensor_view {
    //! Address of the first element (const-ness is tracked by the owner, not here).
    void* data = nullptr;
    //! Number of elements.
    std::size_t size = 0;
    //! Element type of the data.
    dtype type = dtype::float32;

    any_tensor_view() = default;
    template <class T>
    //! Type-erases a typed view.
    any_tensor_view(tensor_view<T> v) // NOLINT(google-explicit-constructor)
        : data(const_cast<std::remove_const_t<T>*>(v.data())), size(v.size()), type(dtype_of<std::remove_const_t<T>>) {}

    template <parameter_element T>
    //! The typed view back; T must match `type` (the caller checks).
    tensor_view<T> as() const { return {static_cast<T*>(data), size}; }
};

} // namespace childtune
