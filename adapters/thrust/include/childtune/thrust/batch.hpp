#pragma once
//! \file
//! The launch of a batched step (step.hpp): tensors share one index space, each
//! starting at a multiple of `batch_alignment`; one `for_each` covers the space
//! and each index finds its tensor in a descriptor table copied to the system
//! once per launch, then runs the rule's scalar definition on its element.

#include <childtune/config.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/slot_search.hpp>
#include <childtune/thrust/system.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

namespace detail {

//! What a kernel needs of one tensor: trivially copyable, so it can live in the
//! system's memory.
template <class Rule, class P, class S, class MaskView>
struct tensor_slot {
    P* param;
    const P* grad;
    S* state[childtune::detail::max_rule_state_buffers];
    std::uint64_t size;
    std::uint64_t first; //!< index of element 0 in the batch's index space
    std::uint64_t first_block; //!< index of its first 64-element block among the batch's (per-tensor phase)
    MaskView mask;
    typename Rule::template step_constants<S> constants;
    childtune::detail::mask_plan<bool, S> plan;
};

//! The per-index work of a batched step: find the tensor, step one element.
template <class Rule, std::size_t Buffers, class P, class S, class MaskView>
struct batch_element_step {
    const tensor_slot<Rule, P, S, MaskView>* slots;
    std::uint32_t count;

    CHILDTUNE_HD void operator()(std::uint64_t index) const {
        using slot = tensor_slot<Rule, P, S, MaskView>;
        const slot& t = slot_of(slots, count, index, [](const slot& x) { return x.first; });
        const std::uint64_t i = index - t.first;
        if (i >= t.size) return; // alignment padding
        S p = childtune::detail::widen<S>(t.param[i]);
        S state[childtune::detail::rule_state_slots<Rule>()] = {};
        if constexpr (Buffers > 0)
            for (std::size_t b = 0; b < Buffers; ++b) state[b] = t.state[b][i];
        Rule::apply(t.constants, t.plan(t.mask.keep(i)), p, childtune::detail::widen<S>(t.grad[i]), state);
        t.param[i] = childtune::detail::narrow<P>(p);
        if constexpr (Buffers > 0)
            for (std::size_t b = 0; b < Buffers; ++b) t.state[b][i] = state[b];
    }
};

template <class Policy, class Rule, std::size_t Buffers, class P, class S, class MaskView>
void run_batch(const Policy& policy, const std::vector<tensor_slot<Rule, P, S, MaskView>>& slots, std::uint64_t extent) {
    using slot = tensor_slot<Rule, P, S, MaskView>;
    const scratch<slot, Policy> table(policy, slots.size(), "the step's descriptor table");
    copy_to_system(policy, slots.data(), slots.size(), table.get());
    const batch_element_step<Rule, Buffers, P, S, MaskView> f{table.get(), static_cast<std::uint32_t>(slots.size())};
    ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                       ::thrust::counting_iterator<std::uint64_t>(extent), f);
}

} // namespace detail

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
