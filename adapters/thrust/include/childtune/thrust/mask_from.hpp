#pragma once
//! \file
//! A host bit_mask from a Thrust vector of 0/1 values (device or host memory):
//! the Thrust form of childtune::mask_from_values (mask/mask_from.hpp), for a
//! mask computed on the device by the user's own code.

#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_from.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/copy.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! The mask of `v` (a thrust::device_vector or host_vector of bool, integers or
//! floating point; 0 or 1 per element), copied to the host once (one transfer of
//! v.size() elements) and checked there: a value other than 0 or 1 throws
//! childtune::error naming `name`, the element and the value. The result serves
//! a fixed mask, or device_mask_set::upload for the device step.
template <class Vector>
bit_mask mask_from(std::string_view name, const Vector& v) {
    using T = typename Vector::value_type;
    using Host = std::conditional_t<std::is_same_v<T, bool>, std::uint8_t, T>; // std::vector<bool> is not contiguous
    std::vector<Host> host(v.size());
    ::thrust::copy(v.begin(), v.end(), host.begin());
    return childtune::mask_from_values(name, std::span<const Host>(host));
}

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
