#pragma once
//! \file
//! What a gradient-driven mask policy is shown of a step's gradients (the
//! optional `observe` member of mask_policy, concepts.hpp).
//!
//! Magnitude masks (SIFT, Song et al. 2023) and refreshed Fisher masks (DPS,
//! Zhang et al. 2022) choose their mask from the gradients of the step they
//! mask. The optimizer shows such a policy the gradients of the tensors that use
//! it, after the NaN/Inf scan and before any view of the step is taken, as host
//! copies widened to float: whole logical tensors, in registration order, the
//! same values on every rank of a sharded optimizer (the slices are gathered
//! through its communicator). Every executor fills the reader the same way, so
//! a policy written against it runs on all of them.

#include <childtune/mask/tensor_info.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune {

//! The gradients of the tensors that use one mask policy at one step: tensor k's
//! identity (`info(k)`, with offset 0 and elements = size: the whole logical
//! tensor) and its gradient widened to float (`values(k)`, size() elements;
//! double gradients are rounded to nearest float). Only tensors whose gradient is
//! present at this step are listed. The reader and its spans are valid during
//! the `observe` call only.
class gradient_reader {
public:
    gradient_reader() = default;
    //! One entry per tensor: `infos[k]` and its values `values[k]` (`values[k].size()` == `infos[k].size`).
    gradient_reader(std::vector<tensor_info> infos, std::vector<std::span<const float>> values)
        : infos_(std::move(infos)), values_(std::move(values)) {}

    //! Number of tensors shown.
    std::size_t size() const { return infos_.size(); }
    //! Tensor k as mask policies see it (the whole logical tensor).
    const tensor_info& info(std::size_t k) const { return infos_[k]; }
    //! Tensor k's gradient, widened to float, info(k).size elements.
    std::span<const float> values(std::size_t k) const { return values_[k]; }
    //! Elements over all tensors shown.
    std::size_t total_elements() const {
        std::size_t n = 0;
        for (const auto& v : values_) n += v.size();
        return n;
    }

private:
    std::vector<tensor_info> infos_;
    std::vector<std::span<const float>> values_;
};

} // namespace childtune
