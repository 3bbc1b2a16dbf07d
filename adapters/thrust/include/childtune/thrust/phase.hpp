#pragma once
//! \file
//! A rule's per-tensor phase (update_rule in concepts.hpp, e.g. LAMB's trust
//! ratio) on a Thrust system, for a whole batch at once, in the canonical order
//! of exec/tensor_sum.hpp, so the sums are the CPU executor's bit for bit:
//!
//! 1. one thread per 64-element block runs the rule's `reduce` on the block's
//!    elements in order, updating their state and summing the terms in double;
//! 2. the block sums are combined by the pairwise levels, one launch per level
//!    for every tensor of the batch (in place: level k keeps value j of a tensor
//!    at its block j·2^k);
//! 3. each tensor's sums come to the host, where the rule's `finish` completes
//!    its constants before the element pass (batch.hpp) runs.

#include <childtune/config.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/thrust/batch.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/slot_search.hpp>
#include <childtune/thrust/system.hpp>
#include <childtune/update/rule_traits.hpp>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {
namespace detail {

template <class Slot>
struct first_block_of {
    CHILDTUNE_HD std::uint64_t operator()(const Slot& s) const { return s.first_block; }
};

//! Step 1: block `index` of the batch.
template <class Rule, std::size_t Buffers, class P, class S, class MaskView>
struct batch_block_reduce {
    const tensor_slot<Rule, P, S, MaskView>* slots;
    std::uint32_t count;
    double* sums;

    CHILDTUNE_HD void operator()(std::uint64_t block) const {
        using slot = tensor_slot<Rule, P, S, MaskView>;
        constexpr std::size_t R = childtune::detail::rule_reduction_count<Rule>();
        const slot& t = slot_of(slots, count, block, first_block_of<slot>{});
        const std::uint64_t first = (block - t.first_block) * 64;
        const std::uint64_t last = first + 64 < t.size ? first + 64 : t.size;
        double total[R] = {};
        for (std::uint64_t i = first; i < last; ++i) {
            S state[childtune::detail::rule_state_slots<Rule>()] = {};
            if constexpr (Buffers > 0)
                for (std::size_t b = 0; b < Buffers; ++b) state[b] = t.state[b][i];
            S terms[R];
            Rule::reduce(t.constants, t.plan(t.mask.keep(i)), childtune::detail::widen<S>(t.param[i]),
                         childtune::detail::widen<S>(t.grad[i]), state, terms);
            if constexpr (Buffers > 0)
                for (std::size_t b = 0; b < Buffers; ++b) t.state[b][i] = state[b];
            for (std::size_t r = 0; r < R; ++r) total[r] += static_cast<double>(terms[r]);
        }
        for (std::size_t r = 0; r < R; ++r) sums[block * R + r] = total[r];
    }
};

//! Step 2: one level (pairs `stride` blocks apart) of every tensor.
template <class Slot, std::size_t R>
struct batch_sum_level {
    const Slot* slots;
    std::uint32_t count;
    double* sums;
    std::uint64_t stride;

    CHILDTUNE_HD void operator()(std::uint64_t block) const {
        const Slot& t = slot_of(slots, count, block, first_block_of<Slot>{});
        const std::uint64_t local = block - t.first_block, blocks = (t.size + 63) / 64;
        if (local % (2 * stride) != 0 || local + stride >= blocks) return;
        for (std::size_t r = 0; r < R; ++r) sums[block * R + r] += sums[(block + stride) * R + r];
    }
};

//! Step 3's gather: each tensor's sums (at its first block) to a compact array.
template <class Slot, std::size_t R>
struct batch_sum_gather {
    const Slot* slots;
    const double* sums;
    double* out;

    CHILDTUNE_HD void operator()(std::uint64_t t) const {
        for (std::size_t r = 0; r < R; ++r) out[t * R + r] = sums[slots[t].first_block * R + r];
    }
};

//! Runs the phase for `slots` (covering `blocks` blocks) and completes each
//! slot's constants with the rule's `finish`.
template <class Policy, class Rule, std::size_t Buffers, class P, class S, class MaskView>
void run_phase(const Policy& policy, std::vector<tensor_slot<Rule, P, S, MaskView>>& slots, std::uint64_t blocks) {
    using slot = tensor_slot<Rule, P, S, MaskView>;
    constexpr std::size_t R = childtune::detail::rule_reduction_count<Rule>();
    const auto count = static_cast<std::uint32_t>(slots.size());
    const scratch<slot, Policy> table(policy, slots.size(), "the phase's descriptor table");
    copy_to_system(policy, slots.data(), slots.size(), table.get());
    const scratch<double, Policy> sums(policy, blocks * R, "the per-tensor sums");
    const auto all = [&](auto f) {
        ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                           ::thrust::counting_iterator<std::uint64_t>(blocks), f);
    };
    all(batch_block_reduce<Rule, Buffers, P, S, MaskView>{table.get(), count, sums.get()});
    std::uint64_t most = 0;
    for (const auto& s : slots) most = std::max<std::uint64_t>(most, (s.size + 63) / 64);
    for (std::uint64_t stride = 1; stride < most; stride *= 2)
        all(batch_sum_level<slot, R>{table.get(), count, sums.get(), stride});
    const scratch<double, Policy> gathered(policy, slots.size() * R, "the per-tensor sums");
    ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                       ::thrust::counting_iterator<std::uint64_t>(slots.size()),
                       batch_sum_gather<slot, R>{table.get(), sums.get(), gathered.get()});
    std::vector<double> host(slots.size() * R);
    copy_to_host(policy, gathered.get(), host.size(), host.data());
    for (std::size_t t = 0; t < slots.size(); ++t) {
        std::array<double, R> s{};
        for (std::size_t r = 0; r < R; ++r) s[r] = host[t * R + r];
        Rule::finish(slots[t].constants, s);
    }
}

} // namespace detail
} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
