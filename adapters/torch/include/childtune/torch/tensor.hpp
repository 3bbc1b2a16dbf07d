#pragma once
//! \file
//! LibTorch tensors as childtune tensor views.
//!
//! The fused CPU step works on the tensor's own memory (no copies), so it accepts
//! exactly what it can read as one run of elements: dense (strided, not sparse),
//! contiguous CPU tensors of float, double, bfloat16 or half, with a gradient of
//! the same type, device and size. Anything else is a childtune::error naming the
//! parameter and the problem.

#include <childtune/error.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/tensor_view.hpp>

#include <ATen/ATen.h>

#include <optional>
#include <sstream>
#include <string>
#include <type_traits>

namespace childtune::torch {

//! The childtune element type of a LibTorch scalar type, if it has one.
inline std::optional<dtype> element_type(c10::ScalarType t) {
    switch (t) {
    case c10::ScalarType::Float: return dtype::float32;
    case c10::ScalarType::Double: return dtype::float64;
    case c10::ScalarType::BFloat16: return dtype::bfloat16;
    case c10::ScalarType::Half: return dtype::float16;
    default: return std::nullopt;
    }
}

namespace detail {
static_assert(sizeof(c10::BFloat16) == sizeof(bfloat16) && sizeof(c10::Half) == sizeof(float16),
              "LibTorch's 16-bit types must stay bare 16-bit patterns to be viewed in place");

inline std::string describe(const at::Tensor& t) {
    std::ostringstream s;
    s << t.scalar_type() << " " << t.device() << " tensor of shape " << t.sizes();
    return s.str();
}

//! Checks a parameter for the optimizer; `where` names it in messages.
inline void check_parameter(const at::Tensor& p, const std::string& where) {
    if (!p.defined()) childtune::detail::fail(where + ": the parameter is an undefined tensor");
    if (p.layout() != c10::kStrided) childtune::detail::fail(where + ": sparse or non-strided parameters are not supported");
    if (!element_type(p.scalar_type()))
        childtune::detail::fail(where + ": " + describe(p) + " has an unsupported dtype (float, double, bfloat16, half)");
    if (!p.is_contiguous())
        childtune::detail::fail(where + ": the parameter is not contiguous (" + describe(p) +
                                "); the fused step works on the tensor's memory in place");
}

//! Checks a defined gradient against its parameter.
inline void check_gradient(const at::Tensor& p, const at::Tensor& g, const std::string& where) {
    if (g.is_sparse()) childtune::detail::fail(where + ": sparse gradients are not supported");
    if (g.layout() != c10::kStrided) childtune::detail::fail(where + ": non-strided gradients are not supported");
    if (g.scalar_type() != p.scalar_type())
        childtune::detail::fail(where + ": gradient dtype " + std::string(c10::toString(g.scalar_type())) +
                                " differs from the parameter's " + std::string(c10::toString(p.scalar_type())));
    if (g.device() != p.device())
        childtune::detail::fail(where + ": gradient is on " + g.device().str() + ", the parameter on " + p.device().str());
    if (g.numel() != p.numel())
        childtune::detail::fail(where + ": gradient has " + std::to_string(g.numel()) + " elements, the parameter " +
                                std::to_string(p.numel()));
    if (!g.is_contiguous()) childtune::detail::fail(where + ": the gradient is not contiguous (" + describe(g) + ")");
}

//! The memory of a checked contiguous tensor as a view of T.
template <class T>
    requires parameter_element<std::remove_const_t<T>>
tensor_view<T> view_of(const at::Tensor& t) {
    return {static_cast<T*>(t.data_ptr()), static_cast<std::size_t>(t.numel())};
}
} // namespace detail

} // namespace childtune::torch
