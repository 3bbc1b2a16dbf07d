#pragma once
//! \file
//! Masks from LibTorch tensors: a bool, integer or floating-point tensor of 0/1
//! values (on any device, of any layout) becomes a bit_mask, and a dict of them
//! a mask_set keyed by parameter name, for `set_mask(childtune::fixed{...})`.
//! Element i is element i of the tensor in row-major (contiguous) order, the
//! order in which the optimizer registers a parameter.

#include <childtune/error.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_from.hpp>
#include <childtune/mask/mask_set.hpp>

#include <ATen/ATen.h>
#include <torch/ordered_dict.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace childtune::torch {

//! The mask of tensor `t`: copied to the CPU and made contiguous when it is not
//! already (one copy), then checked element by element: a value other than 0 or
//! 1 (NaN included) throws childtune::error naming `name`, the flat element
//! index and the value. float16 and bfloat16 are widened to float (exactly).
inline bit_mask mask_from(std::string_view name, const at::Tensor& t) {
    if (!t.defined()) childtune::detail::fail("mask from values: tensor '" + std::string(name) + "' is undefined");
    if (t.is_complex())
        childtune::detail::fail("mask from values: tensor '" + std::string(name) + "' is complex; a mask holds 0 and 1");
    at::Tensor c = t.to_dense().to(at::kCPU).contiguous();
    if (c.scalar_type() == at::kHalf || c.scalar_type() == at::kBFloat16) c = c.to(at::kFloat);
    const auto n = static_cast<std::size_t>(c.numel());
    switch (c.scalar_type()) {
    case at::kBool: return mask_from_values(name, std::span<const bool>(c.data_ptr<bool>(), n));
    case at::kByte: return mask_from_values(name, std::span<const std::uint8_t>(c.data_ptr<std::uint8_t>(), n));
    case at::kChar: return mask_from_values(name, std::span<const std::int8_t>(c.data_ptr<std::int8_t>(), n));
    case at::kShort: return mask_from_values(name, std::span<const std::int16_t>(c.data_ptr<std::int16_t>(), n));
    case at::kInt: return mask_from_values(name, std::span<const std::int32_t>(c.data_ptr<std::int32_t>(), n));
    case at::kLong: return mask_from_values(name, std::span<const std::int64_t>(c.data_ptr<std::int64_t>(), n));
    case at::kFloat: return mask_from_values(name, std::span<const float>(c.data_ptr<float>(), n));
    case at::kDouble: return mask_from_values(name, std::span<const double>(c.data_ptr<double>(), n));
    default:
        childtune::detail::fail("mask from values: tensor '" + std::string(name) + "' has element type " +
                                std::string(c10::toString(c.scalar_type())) + ", which cannot hold a mask");
    }
}

//! A mask_set from named 0/1 tensors (e.g. a dict saved by Python, loaded with
//! torch::load), in order; each through mask_from (errors name the tensor).
inline mask_set mask_set_from(const ::torch::OrderedDict<std::string, at::Tensor>& named) {
    mask_set set;
    for (const auto& item : named) set.add(item.key(), mask_from(item.key(), item.value()));
    return set;
}

} // namespace childtune::torch
