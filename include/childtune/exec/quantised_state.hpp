#pragma once
//! \file
//! The 8-bit blockwise state storage (optimizer_options::storage =
//! state_storage::blockwise8) as the CPU runner uses it: a state buffer holds
//! one byte per stored element (numeric/blockwise8.hpp) followed by one float
//! scale per quantisation block, and each window of a step is decoded into a
//! small float buffer, stepped by the rule's ordinary element pass (the same
//! `apply` as fp32 state), and encoded again.
//!
//! Blocks are counted in *tensor* elements: block q covers elements
//! [256q, 256q + 256) of the registered view. In the full layout its codes are
//! those elements'; in the compact Child-Tuning_D layout (registry/state_layout.hpp)
//! they are the codes of the block's kept elements, in mask order, so the two
//! layouts combine and a block never straddles two work items. Every window
//! the runner hands over starts at a multiple of 1024 elements, so a step's
//! results do not depend on how the tensor is split across threads.

#include <childtune/numeric/blockwise8.hpp>
#include <childtune/update/rule_traits.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace childtune::detail {

//! The most elements of one window: 16 of the runner's 64-element keep words,
//! four quantisation blocks, and float scratch that stays in L1.
inline constexpr std::size_t blockwise8_window_elements = 1024;

//! Whether state buffer b of Rule is non-negative (the unsigned map; second moments).
template <class Rule>
constexpr bool nonnegative_state_buffer(std::size_t b) {
    if constexpr (requires { Rule::nonnegative_state_buffers; }) return ((Rule::nonnegative_state_buffers >> b) & 1u) != 0;
    else return false;
}

//! One window [first, last) (first a multiple of blockwise8_window_elements) of a
//! tensor of n elements whose `buffers` state buffers are quantised: decodes the
//! window's blocks into float scratch, calls `step(state, kept)` with the scratch
//! buffers (element 0 = the window's first stored element) and, for the compact
//! layout, the window's kept counts relative to its start (else null), then
//! encodes the blocks again. `kept_before` is the tensor's compact layout, or null.
template <class Rule, class Step>
void blockwise8_window(void* const* state, std::size_t buffers, std::size_t n, const std::uint32_t* kept_before,
                       std::size_t first, std::size_t last, Step&& step) {
    alignas(64) float scratch[max_rule_state_buffers][blockwise8_window_elements];
    std::uint32_t kept[blockwise8_window_elements / 64 + 1];
    const std::size_t codes = kept_before ? kept_before[(n + 63) / 64] : n;
    // The stored range of block q, relative to nothing (absolute code indices).
    auto block_range = [&](std::size_t q, std::size_t& c0, std::size_t& c1) {
        const std::size_t e0 = q * blockwise8_block, e1 = std::min(n, e0 + blockwise8_block);
        if (kept_before) {
            c0 = kept_before[e0 / 64];
            c1 = kept_before[(e1 + 63) / 64];
        } else {
            c0 = e0;
            c1 = e1;
        }
    };
    const std::size_t q0 = first / blockwise8_block, q1 = (last + blockwise8_block - 1) / blockwise8_block;
    std::size_t base = 0, end = 0;
    block_range(q0, base, end);
    float* s[max_rule_state_buffers] = {};
    for (std::size_t b = 0; b < buffers; ++b) {
        const dynamic_map& map = nonnegative_state_buffer<Rule>(b) ? unsigned_dynamic_map() : signed_dynamic_map();
        auto* bytes = static_cast<std::uint8_t*>(state[b]);
        const auto* scales = reinterpret_cast<const float*>(bytes + blockwise8_scales_offset(codes));
        for (std::size_t q = q0; q < q1; ++q) {
            std::size_t c0 = 0, c1 = 0;
            block_range(q, c0, c1);
            dequantise_block(map, bytes + c0, c1 - c0, scales[q], scratch[b] + (c0 - base));
        }
        s[b] = scratch[b];
    }
    const std::uint32_t* window_kept = nullptr;
    if (kept_before) {
        const std::size_t w0 = first / 64, w1 = (last + 63) / 64;
        for (std::size_t w = w0; w <= w1; ++w) kept[w - w0] = kept_before[w] - kept_before[w0];
        window_kept = kept;
    }
    void* erased[max_rule_state_buffers] = {};
    for (std::size_t b = 0; b < buffers; ++b) erased[b] = s[b];
    step(static_cast<void* const*>(erased), window_kept);
    for (std::size_t b = 0; b < buffers; ++b) {
        const dynamic_map& map = nonnegative_state_buffer<Rule>(b) ? unsigned_dynamic_map() : signed_dynamic_map();
        auto* bytes = static_cast<std::uint8_t*>(state[b]);
        auto* scales = reinterpret_cast<float*>(bytes + blockwise8_scales_offset(codes));
        for (std::size_t q = q0; q < q1; ++q) {
            std::size_t c0 = 0, c1 = 0;
            block_range(q, c0, c1);
            scales[q] = quantise_block(map, scratch[b] + (c0 - base), c1 - c0, bytes + c0);
        }
    }
}

} // namespace childtune::detail
