#pragma once
//! \file
//! What the executors ask of an update rule beyond the update_rule concept: the
//! optional members a rule may declare, with their defaults. A rule states only
//! what differs from the default (ensmallen's habit: optional hooks found at
//! compile time), so a new rule is one header.
//!
//! | member                                 | default | meaning |
//! |----------------------------------------|---------|---------|
//! | `min_state_buffers`                    | `max_state_buffers` | fewest buffers `state_buffers(o)` may return (SGD: 0 without momentum) |
//! | `inline_apply`                         | false   | `apply` (and `reduce`) are CHILDTUNE_HD_INLINE: the wide kernels may use them |
//! | `reduction_count`, `reduce`, `finish`  | 0       | a per-tensor phase (update_rule in concepts.hpp) |
//! | `compact_state_exact(o, masking)`      | absent  | masked elements' state provably stays zero: compact Child-Tuning_D state allowed |
//! | `nonnegative_state_buffers`            | 0       | bit b set: buffer b never goes below 0, so 8-bit state stores it with the unsigned map (exec/quantised_state.hpp) |
//!
//! Shared by the CPU kernels and the Thrust and ATen executors, so it stays free
//! of host-only code.

#include <childtune/config.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace childtune::detail {

//! The most state buffers (per-element arrays) a rule may keep.
inline constexpr std::size_t max_rule_state_buffers = 4;

//! Length of the state array a rule's `apply` takes: `V (&state)[N]` with N =
//! max(2, max_state_buffers), so rules with up to two buffers all take `[2]`.
template <class Rule>
CHILDTUNE_HD constexpr std::size_t rule_state_slots() {
    return Rule::max_state_buffers > 2 ? Rule::max_state_buffers : 2;
}

//! The fewest state buffers a rule may use.
template <class Rule>
CHILDTUNE_HD constexpr std::size_t min_state_buffers() {
    if constexpr (requires { Rule::min_state_buffers; }) return Rule::min_state_buffers;
    else return Rule::max_state_buffers;
}

//! Whether a rule promises to inline `apply` (CHILDTUNE_HD_INLINE).
template <class Rule>
CHILDTUNE_HD constexpr bool inlines_apply() {
    if constexpr (requires { Rule::inline_apply; }) return Rule::inline_apply;
    else return false;
}

//! How many per-tensor sums the rule's phase needs (0: no phase).
template <class Rule>
CHILDTUNE_HD constexpr std::size_t rule_reduction_count() {
    if constexpr (requires { Rule::reduction_count; }) return Rule::reduction_count;
    else return 0;
}

//! Whether the rule may keep compact Child-Tuning_D state (it says when it is exact).
template <class Rule>
CHILDTUNE_HD constexpr bool supports_compact_state() {
    return requires(const typename Rule::options& o) { Rule::compact_state_exact(o, {}); };
}

//! Calls `f(std::integral_constant<std::size_t, buffers>{})` when `buffers` is a
//! count the rule may use, and says whether it did: kernels are instantiated per
//! buffer count, so a rule's unused state loads and stores vanish at compile time.
template <class Rule, class F>
bool with_state_buffers(std::size_t buffers, F&& f) {
    constexpr std::size_t lo = min_state_buffers<Rule>(), hi = Rule::max_state_buffers;
    bool called = false;
    auto one = [&](auto count) {
        constexpr std::size_t b = decltype(count)::value;
        if constexpr (lo <= b && b <= hi)
            if (buffers == b) {
                f(count);
                called = true;
            }
    };
    one(std::integral_constant<std::size_t, 0>{});
    one(std::integral_constant<std::size_t, 1>{});
    one(std::integral_constant<std::size_t, 2>{});
    one(std::integral_constant<std::size_t, 3>{});
    one(std::integral_constant<std::size_t, 4>{});
    return called;
}

} // namespace childtune::detail
