#pragma once
//! \file
//! The canonical order of a per-tensor sum, so that a rule's per-tensor phase
//! (LAMB's norms) gives the same bits on every executor, thread count and
//! instruction set.
//!
//! Floating-point addition is not associative, so "the sum over the tensor" is
//! defined by its order:
//!
//! 1. the tensor's elements are cut into blocks of 64 from element 0; each
//!    block's terms are summed in element order, in double precision;
//! 2. the block sums are combined pairwise by levels: level k+1 holds
//!    v[2i] + v[2i+1] of level k, and a last odd value is carried up unchanged,
//!    until one value remains.
//!
//! Level k's value i covers blocks [i·2^k, (i+1)·2^k), so any range of blocks
//! that starts at a multiple of 2^k can be reduced k levels on its own: the CPU
//! executor reduces each work item (a power-of-two number of blocks) on its
//! thread and combines the items' values with the same function; the Thrust and
//! ATen executors run the levels as element-wise passes.

#include <cstddef>

namespace childtune::detail {

//! Elements per block of the canonical sum.
inline constexpr std::size_t sum_block_elements = 64;

//! Reduces `count` groups of `width` sums (group i at values[i*width]) by the
//! pairwise levels into values[0 .. width). `count` == 0 leaves zeros there.
inline void pairwise_levels(double* values, std::size_t count, std::size_t width) {
    if (count == 0) {
        for (std::size_t r = 0; r < width; ++r) values[r] = 0.0;
        return;
    }
    while (count > 1) {
        const std::size_t next = (count + 1) / 2;
        for (std::size_t i = 0; i < count / 2; ++i)
            for (std::size_t r = 0; r < width; ++r)
                values[i * width + r] = values[2 * i * width + r] + values[(2 * i + 1) * width + r];
        if (count % 2 != 0)
            for (std::size_t r = 0; r < width; ++r) values[(next - 1) * width + r] = values[(count - 1) * width + r];
        count = next;
    }
}

} // namespace childtune::detail
