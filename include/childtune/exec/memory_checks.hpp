#pragma once
//! \file
//! Checks of the memory an executor binds a tensor to, shared by the executors
//! that take raw pointers (host memory, a Thrust system's memory): sizes that
//! would wrap, null pointers, and overlaps that would make a parallel step read
//! values it has already overwritten.

#include <childtune/error.hpp>
#include <childtune/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace childtune::detail {

//! A tensor already bound: its name and parameter bytes.
struct bound_parameter {
    std::string_view name;
    const void* data = nullptr;
    std::size_t bytes = 0;
};

//! `elements` of `type` at `param` with gradient `grad` (null while absent).
//! Messages start with `where` (group and tensor).
inline void check_tensor_memory(const std::string& where, dtype type, std::size_t elements, std::size_t element_bytes,
                                const void* param, const void* grad, std::span<const bound_parameter> others) {
    if (elements == 0) return;
    // First: the byte counts below (and the state a step allocates) would wrap.
    if (elements > static_cast<std::size_t>(PTRDIFF_MAX) / element_bytes)
        fail(where + ": " + std::to_string(elements) + " elements of " + std::string(dtype_name(type)) +
             " exceed the address space (corrupt or made-up size)");
    if (!param) fail(where + ": null parameter data pointer");
    const std::size_t bytes = elements * element_bytes;
    // Aliasing param and grad would make the step read gradients it has already
    // overwritten with parameters (in an order that depends on the thread count).
    if (grad && ranges_overlap(param, bytes, grad, bytes)) fail(where + ": parameter and gradient memory overlap");
    for (const auto& t : others) {
        if (ranges_overlap(param, bytes, t.data, t.bytes))
            fail(where + ": parameter memory overlaps tensor '" + std::string(t.name) + "' (registered twice?)");
        // A gradient inside another tensor's parameter changes while the step
        // writes that parameter.
        if (grad && ranges_overlap(grad, bytes, t.data, t.bytes))
            fail(where + ": gradient memory overlaps the parameter of tensor '" + std::string(t.name) + "'");
    }
}

constexpr std::size_t dtype_bytes(dtype t) {
    switch (t) {
    case dtype::float32: return 4;
    case dtype::float64: return 8;
    default: return 2;
    }
}

} // namespace childtune::detail
