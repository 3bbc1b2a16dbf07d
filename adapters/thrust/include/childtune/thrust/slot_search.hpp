#pragma once
//! \file
//! How a thread of a batched kernel finds its tensor: tensors are laid out one
//! after another in one index space, each described by a slot holding where it
//! starts, and the thread's index belongs to the last slot starting at or before it.

#include <childtune/config.hpp>
#include <childtune/thrust/system.hpp>

#include <cstdint>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {
namespace detail {

//! The last of `count` >= 1 slots, sorted by `first_of(slot)`, with
//! first_of(slot) <= index (binary search; slot 0 starts at 0).
template <class Slot, class FirstOf>
CHILDTUNE_HD_INLINE const Slot& slot_of(const Slot* slots, std::uint32_t count, std::uint64_t index,
                                        FirstOf first_of) {
    std::uint32_t lo = 0, hi = count;
    while (hi - lo > 1) {
        const std::uint32_t mid = lo + (hi - lo) / 2;
        if (first_of(slots[mid]) <= index) lo = mid;
        else hi = mid;
    }
    return slots[lo];
}

} // namespace detail
} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
