#pragma once
//! \file
//! How many state buffers a rule uses, as a compile-time constant for the kernels.
//!
//! Kernels are instantiated per buffer count (0, 1 or 2), so a rule's state
//! loads and stores vanish at compile time; the count itself is a run-time value
//! (SGD has a momentum buffer only when momentum != 0). Shared by the CPU step and
//! the Thrust adapter, so it stays free of host-only code.

#include <cstddef>
#include <type_traits>

namespace childtune::detail {

//! The fewest state buffers a rule may use (rules whose state depends on their
//! options, like SGD's momentum buffer, say so with `min_state_buffers`).
template <class Rule>
constexpr std::size_t min_state_buffers() {
    if constexpr (requires { Rule::min_state_buffers; }) return Rule::min_state_buffers;
    else return Rule::max_state_buffers;
}

//! Calls `f(std::integral_constant<std::size_t, buffers>{})` when `buffers` is a
//! count the rule may use (0 to 2), and says whether it did.
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
    return called;
}

} // namespace childtune::detail
