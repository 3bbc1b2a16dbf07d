#pragma once
//! \file
//! The no-op mask: every element is kept, nothing is scaled. Vanilla fine-tuning,
//! and the mode of parameter groups the reference trains densely (embeddings and
//! the task head).

#include <childtune/config.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <cstdint>

namespace childtune {

class dense_view {
public:
    static constexpr bool is_dense = true;
    CHILDTUNE_HD bool keep(std::uint64_t) const { return true; }
    std::uint64_t bits64(std::uint64_t) const { return ~std::uint64_t{0}; }
    CHILDTUNE_HD double keep_probability() const { return 1.0; }
};

struct dense {
    void validate() const {}
    dense_view view(std::uint32_t = 0, std::uint64_t = 0, std::uint64_t = 0) const { return {}; }
    dense_view view(const tensor_info&, std::uint64_t) const { return {}; }
    friend bool operator==(const dense&, const dense&) = default;
};

} // namespace childtune
