#pragma once
//! \file
//! The no-op mask: every element is kept, nothing is scaled. Vanilla fine-tuning,
//! and the mode of parameter groups the reference trains densely (embeddings and
//! the task head).

#include <childtune/config.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <cstdint>

namespace childtune {

//! The view of dense{}: every element kept, p = 1.
class dense_view {
public:
    //! Known at compile time, so kernels drop the mask entirely.
    static constexpr bool is_dense = true;
    //! Always true.
    CHILDTUNE_HD bool keep(std::uint64_t) const { return true; }
    //! All 64 bits set.
    std::uint64_t bits64(std::uint64_t) const { return ~std::uint64_t{0}; }
    //! 1: kept gradients are not rescaled.
    CHILDTUNE_HD double keep_probability() const { return 1.0; }
};

//! The dense mask policy: vanilla fine-tuning, or a group trained densely.
struct dense {
    //! Nothing to check.
    void validate() const {}
    //! The view under the 0.1 signature (tensor key, step, element offset).
    dense_view view(std::uint32_t = 0, std::uint64_t = 0, std::uint64_t = 0) const { return {}; }
    //! The view of any tensor at any step.
    dense_view view(const tensor_info&, std::uint64_t) const { return {}; }
    //! All dense policies are equal.
    friend bool operator==(const dense&, const dense&) = default;
};

} // namespace childtune
