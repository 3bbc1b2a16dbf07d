#pragma once
//! \file
//! Which contiguous slice of the flattened parameters a rank owns.
//!
//! The parameters of all registered tensors, in registration order, form one
//! flat index space of `total` elements. Rank r of `world` ranks owns
//! [begin, end): the first total % world ranks one element more than the others,
//! so the slices differ by at most one element and depend on nothing but
//! (total, world, rank) — every rank computes every other rank's slice itself.

#include <childtune/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace childtune {

//! Elements [begin, end) of a flat index space.
struct shard_range {
    //! First element of the slice.
    std::uint64_t begin = 0;
    //! One past its last element.
    std::uint64_t end = 0;
    //! Number of elements.
    constexpr std::uint64_t size() const { return end - begin; }
    //! Same bounds.
    friend constexpr bool operator==(const shard_range&, const shard_range&) = default;
};

//! The slice of rank `rank` of `world` over `total` elements.
constexpr shard_range shard_of(std::uint64_t total, std::size_t world, std::size_t rank) {
    if (world == 0 || rank >= world)
        detail::fail("shard_of: rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world) + " ranks");
    const std::uint64_t w = world, r = rank;
    const std::uint64_t base = total / w, extra = total % w;
    const std::uint64_t begin = r * base + std::min(r, extra);
    return {begin, begin + base + (r < extra ? 1 : 0)};
}

//! The part of [a_begin, a_end) inside `s`, relative to a_begin (empty: begin == end).
constexpr shard_range intersect(shard_range s, std::uint64_t a_begin, std::uint64_t a_end) {
    const std::uint64_t lo = std::max(s.begin, a_begin), hi = std::min(s.end, a_end);
    if (lo >= hi) return {0, 0};
    return {lo - a_begin, hi - a_begin};
}

} // namespace childtune
