#pragma once
//! \file
//! The pieces of the radix select (select/order_statistic.hpp): order-preserving
//! integer keys of float and double scores, the flattened view of several score
//! arrays, the fixed chunking every pass uses, and the search for NaN.

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace childtune::detail {

template <class R>
using segment_score_t = typename score_span_traits<std::ranges::range_value_t<R>>::score;

template <score_element Score>
struct order_key_traits;
template <>
struct order_key_traits<float> {
    using key_type = std::uint32_t;
    static constexpr key_type infinity_bits = 0x7F800000u;
    static constexpr std::array<int, 3> digit_bits{11, 11, 10};
};
template <>
struct order_key_traits<double> {
    using key_type = std::uint64_t;
    static constexpr key_type infinity_bits = 0x7FF0000000000000u;
    static constexpr std::array<int, 6> digit_bits{11, 11, 11, 11, 10, 10};
};
template <score_element Score>
using order_key_t = typename order_key_traits<Score>::key_type;
static_assert(std::bit_cast<std::uint32_t>(std::numeric_limits<float>::infinity()) ==
              order_key_traits<float>::infinity_bits);
static_assert(std::bit_cast<std::uint64_t>(std::numeric_limits<double>::infinity()) ==
              order_key_traits<double>::infinity_bits);

inline constexpr int max_digit_bits = 11;
//! Interleaved sub-histograms per chunk: a run of equal digits (common in Fisher
//! scores, which share few exponents) would otherwise serialise on one counter.
inline constexpr std::size_t histogram_lanes = 4;
//! Candidates are copied out and finished in memory once they fit in this many bytes.
inline constexpr std::size_t gather_bytes = std::size_t{1} << 20;

template <score_element Score>
CHILDTUNE_HD_INLINE bool is_nan_bits(order_key_t<Score> u) {
    using K = order_key_t<Score>;
    constexpr K magnitude = ~K{0} >> 1;
    constexpr K infinity = order_key_traits<Score>::infinity_bits;
    return (u & magnitude) > infinity;
}

//! Unsigned key whose integer order is the numeric order of non-NaN scores:
//! negative numbers have all bits flipped, non-negative ones the sign bit set,
//! and -0 is first folded onto +0 so that equal numbers get equal keys.
template <score_element Score>
CHILDTUNE_HD_INLINE order_key_t<Score> key_from_bits(order_key_t<Score> u) {
    using K = order_key_t<Score>;
    constexpr K sign = ~(~K{0} >> 1);
    u = u == sign ? K{0} : u;
    const K negative = K{0} - (u >> (sizeof(K) * 8 - 1));
    return u ^ (negative | sign);
}

//! The bits of a score (std::bit_cast is not callable from CUDA device code).
template <score_element Score>
CHILDTUNE_HD_INLINE order_key_t<Score> score_bits(Score x) {
    order_key_t<Score> u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

template <score_element Score>
CHILDTUNE_HD_INLINE order_key_t<Score> order_key(Score x) {
    return key_from_bits<Score>(score_bits(x));
}

template <score_element Score>
CHILDTUNE_HD_INLINE Score score_from_key(order_key_t<Score> key) {
    using K = order_key_t<Score>;
    constexpr K sign = ~(~K{0} >> 1);
    const K u = (key & sign) ? static_cast<K>(key ^ sign) : static_cast<K>(~key);
    Score x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

//! The identity projection: selection on the stored scores themselves.
struct identity_projection {
    template <class T>
    CHILDTUNE_HD_INLINE T operator()(T x) const {
        return x;
    }
};

//! |x|: selection by magnitude (mask/magnitude.hpp). std::fabs clears the sign
//! bit, NaNs included, which is how the SSE2 kernels apply it (one AND per
//! vector). Host code only, as the gradient readers that use it.
struct absolute_projection {
    template <class T>
    T operator()(T x) const {
        return std::fabs(x);
    }
};

//! Projections the SSE2 kernels apply themselves (select/detail/histogram_sse2.hpp,
//! select/top_p.hpp), and whether they clear the sign bit.
template <class Proj>
inline constexpr bool sign_clearing_projection = std::is_same_v<Proj, absolute_projection>;
template <class Proj>
inline constexpr bool vector_projection = std::is_same_v<Proj, identity_projection> || sign_clearing_projection<Proj>;

//! Segments seen as one flattened array (segment order, then index).
template <score_element Score>
class flat_segments {
public:
    explicit flat_segments(std::span<const std::span<const Score>> segments)
        : segments_(segments), offsets_(segments.size() + 1, 0) {
        for (std::size_t s = 0; s < segments.size(); ++s) offsets_[s + 1] = offsets_[s] + segments[s].size();
    }
    std::size_t size() const { return offsets_.back(); }
    std::size_t segment_count() const { return segments_.size(); }
    std::span<const Score> segment(std::size_t s) const { return segments_[s]; }
    std::size_t offset(std::size_t s) const { return offsets_[s]; }

    //! Calls f(data, count) for the contiguous pieces of flattened range [begin, end).
    template <class F>
    void for_each_piece(std::size_t begin, std::size_t end, F&& f) const {
        if (begin >= end) return;
        auto s = static_cast<std::size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), begin) -
                                          offsets_.begin()) - 1;
        while (begin < end) {
            const std::size_t seg_end = std::min(end, offsets_[s + 1]);
            if (seg_end > begin) f(segments_[s].data() + (begin - offsets_[s]), seg_end - begin);
            begin = std::max(begin, seg_end);
            ++s;
        }
    }
    //! (segment, index within it) of flattened position i < size().
    std::pair<std::size_t, std::size_t> locate(std::size_t i) const {
        const auto s = static_cast<std::size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), i) -
                                                offsets_.begin()) - 1;
        return {s, i - offsets_[s]};
    }

private:
    std::span<const std::span<const Score>> segments_;
    std::vector<std::size_t> offsets_;
};

//! Fixed chunks of the flattened input; boundaries depend only on its size.
//! At most ~128 chunks (so histograms stay within 1 MiB for float) of at least
//! 64 Ki elements, and at most 2^31 elements each (32-bit counters).
struct chunk_plan {
    std::size_t size = 0;
    std::size_t chunk = 1;
    std::size_t count = 0;

    explicit chunk_plan(std::size_t n) : size(n) {
        constexpr std::size_t min_chunk = std::size_t{1} << 16, target_chunks = 128,
                              max_chunk = std::size_t{1} << 31;
        chunk = std::clamp((n + target_chunks - 1) / target_chunks, min_chunk, max_chunk);
        count = (n + chunk - 1) / chunk;
    }
    std::size_t begin(std::size_t c) const { return c * chunk; }
    std::size_t end(std::size_t c) const { return std::min(size, (c + 1) * chunk); }
};

//! Where the first NaN of a selection input sits.
struct nan_location {
    bool found = false;
    std::size_t segment = 0;
    std::size_t index = 0;
};


template <score_element Score, class Proj>
nan_location find_first_nan(const flat_segments<Score>& segs, std::size_t begin, std::size_t end, const Proj& proj) {
    nan_location where;
    std::size_t flat = begin;
    segs.for_each_piece(begin, end, [&](const Score* x, std::size_t n) {
        for (std::size_t i = 0; i < n && !where.found; ++i)
            if (proj(x[i]) != proj(x[i])) {
                const auto [s, j] = segs.locate(flat + i);
                where = {true, s, j};
            }
        flat += n;
    });
    return where;
}

} // namespace childtune::detail
