#pragma once
//! \file
//! The launch of a batched step (step.hpp): tensors share one index space, each
//! starting at a multiple of `batch_alignment`; one `for_each` covers the space
//! and each index finds its tensor in a descriptor table copied to the system
//! once per launch, then runs the rule's scalar definition on its elements.
//!
//! Each index steps eight elements, i, i + 16, ..., i + 112 of one 128-element
//! group (i among the group's first 16): Child-Tuning_F draws those eight
//! decisions from one Philox block (mask/bernoulli.hpp, definition 2), so a
//! thread computes one block where one index per element computed eight, and
//! the 16 threads of a group still read 16 consecutive elements at each of
//! their eight accesses (coalesced on a GPU). A mask view whose octet_stride()
//! is 1 (Bernoulli definition 4, whose draws share blocks along runs of
//! consecutive elements) has each index step eight consecutive elements of the
//! same group instead: index 16g + j steps elements 128g + 8j .. + 7.

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

//! Elements one index steps, `octet_stride` apart (unless the mask asks for
//! consecutive ones) within a group of `octet_group`.
inline constexpr std::uint64_t octet_stride = 16, octet_group = 128, octet_elements = octet_group / octet_stride;

//! How far apart the elements an index steps are: the view's octet_stride()
//! where it has one (1 or 16), else 16.
template <class MaskView>
CHILDTUNE_HD_INLINE std::uint64_t element_stride(const MaskView& mask) {
    if constexpr (requires { mask.octet_stride(); }) {
        return mask.octet_stride() == 1 ? 1 : octet_stride;
    } else {
        return octet_stride;
    }
}

//! Keep decisions of elements i + dk (k < 8, d = element_stride) of a tensor
//! of `size` elements as bits k: the view's own keep_octet where it has one
//! (one or two blocks for Child-Tuning_F), else keep() per element inside the
//! tensor (a fixed mask's words end with it).
template <class MaskView>
CHILDTUNE_HD_INLINE unsigned keep_octet(const MaskView& mask, std::uint64_t i, std::uint64_t size) {
    if constexpr (requires { mask.keep_octet(i); }) {
        return mask.keep_octet(i);
    } else {
        unsigned bits = 0;
        for (unsigned k = 0; k < octet_elements && i + octet_stride * k < size; ++k)
            bits |= static_cast<unsigned>(mask.keep(i + octet_stride * k)) << k;
        return bits;
    }
}

//! The per-index work of a batched step: find the tensor, step its eight elements.
template <class Rule, std::size_t Buffers, class P, class S, class MaskView>
struct batch_element_step {
    const tensor_slot<Rule, P, S, MaskView>* slots;
    std::uint32_t count;

    CHILDTUNE_HD void operator()(std::uint64_t index) const {
        using slot = tensor_slot<Rule, P, S, MaskView>;
        // Groups of 128 never straddle tensors: tensors start at multiples of 256.
        const std::uint64_t group = index / octet_stride * octet_group;
        const slot& t = slot_of(slots, count, group, [](const slot& x) { return x.first; });
        const std::uint64_t d = element_stride(t.mask);
        const std::uint64_t i = group - t.first + (d == 1 ? octet_elements * (index % octet_stride) : index % octet_stride);
        if (i >= t.size) return; // alignment padding
        const unsigned keep = keep_octet(t.mask, i, t.size);
        if (i + d * (octet_elements - 1) < t.size) {
            // All eight inside the tensor: every load is issued before any store,
            // so the eight elements' reads are in flight together (interleaved,
            // a store to element k could alias a later element's load, and each
            // thread would wait for memory eight times in a row).
            S p[octet_elements], g[octet_elements];
            S state[octet_elements][childtune::detail::rule_state_slots<Rule>()] = {};
            for (unsigned k = 0; k < octet_elements; ++k) {
                const std::uint64_t j = i + d * k;
                p[k] = childtune::detail::widen<S>(t.param[j]);
                g[k] = childtune::detail::widen<S>(t.grad[j]);
                if constexpr (Buffers > 0)
                    for (std::size_t b = 0; b != Buffers; ++b) state[k][b] = t.state[b][j];
            }
            for (unsigned k = 0; k < octet_elements; ++k)
                Rule::apply(t.constants, t.plan(((keep >> k) & 1u) != 0), p[k], g[k], state[k]);
            for (unsigned k = 0; k < octet_elements; ++k) {
                const std::uint64_t j = i + d * k;
                t.param[j] = childtune::detail::narrow<P>(p[k]);
                if constexpr (Buffers > 0)
                    for (std::size_t b = 0; b != Buffers; ++b) t.state[b][j] = state[k][b];
            }
            return;
        }
        for (unsigned k = 0; k < octet_elements; ++k) { // the tensor's last, partial group
            const std::uint64_t j = i + d * k;
            if (j >= t.size) break;
            S p = childtune::detail::widen<S>(t.param[j]);
            S state[childtune::detail::rule_state_slots<Rule>()] = {};
            if constexpr (Buffers > 0)
                for (std::size_t b = 0; b != Buffers; ++b) state[b] = t.state[b][j];
            Rule::apply(t.constants, t.plan(((keep >> k) & 1u) != 0), p, childtune::detail::widen<S>(t.grad[j]), state);
            t.param[j] = childtune::detail::narrow<P>(p);
            if constexpr (Buffers > 0)
                for (std::size_t b = 0; b != Buffers; ++b) t.state[b][j] = state[b];
        }
    }
};

template <class Policy, class Rule, std::size_t Buffers, class P, class S, class MaskView>
void run_batch(const Policy& policy, const std::vector<tensor_slot<Rule, P, S, MaskView>>& slots, std::uint64_t extent) {
    using slot = tensor_slot<Rule, P, S, MaskView>;
    const scratch<slot, Policy> table(policy, slots.size(), "the step's descriptor table");
    copy_to_system(policy, slots.data(), slots.size(), table.get());
    const batch_element_step<Rule, Buffers, P, S, MaskView> f{table.get(), static_cast<std::uint32_t>(slots.size())};
    // `extent` is a multiple of batch_alignment, so of octet_group: every index's
    // group lies inside it.
    ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                       ::thrust::counting_iterator<std::uint64_t>(extent / octet_elements), f);
}

} // namespace detail

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
