#pragma once
//! \file
//! Exact k-th order statistic over several score arrays, without copying or
//! sorting them.
//!
//! Child-Tuning_D (Xu et al. 2021, §2.2) cuts one global threshold through the
//! Fisher scores of every selected tensor. The reference concatenates all scores
//! and lets numpy partition the copy; for a large model that copy is as large as
//! the model. Here the scores stay where they are: a most-significant-digit radix
//! select on an order-preserving integer key of the float bits narrows the
//! candidates with a few read-only histogram passes (11/11/10 bits for float,
//! six passes of at most 11 bits for double), and finishes in a buffer of at most
//! 1 MiB as soon as the candidates fit there.
//!
//! Determinism: every pass splits the flattened input into fixed chunks whose
//! boundaries depend only on the total size; per-chunk histograms are combined in
//! chunk order and hold integers, so the result never depends on the backend or
//! its thread count. Extra memory is O(histogram × chunks) + 1 MiB, never O(N).

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/select/detail/histogram_sse2.hpp>
#include <childtune/select/detail/order_keys.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#if CHILDTUNE_HAS_SSE2
#include <emmintrin.h>
#endif

namespace childtune {

//! The k-th smallest value (0-based) of a multiset together with where it sits:
//! `less` elements compare below it and `equal` compare equal to it, so
//! `less <= k < less + equal`. Values are compared as numbers: -0 equals +0, and
//! the value reported for a zero is +0.
template <score_element Score>
struct kth_value {
    //! The k-th smallest value.
    Score value{};
    //! How many elements compare below it.
    std::size_t less = 0;
    //! How many elements compare equal to it.
    std::size_t equal = 0;
    //! Elements at or below the value: less + equal.
    std::size_t less_equal() const { return less + equal; }
};

//! x[k] and x[k+1] of the ascending order (`next == kth.value` when k is the last
//! index): the two neighbours numpy's linear percentile interpolates between.
template <score_element Score>
struct kth_pair {
    //! x[k], with its position counts.
    kth_value<Score> kth;
    //! x[k+1] (x[k] when k is the last index).
    Score next{};
};

namespace detail {

template <score_element Score>
struct select_outcome {
    kth_pair<Score> pair;
    nan_location nan;
};

//! True where the vector kernels apply: float scores read as stored or by magnitude.
template <class Score, class Proj>
inline constexpr bool use_sse2_keys = CHILDTUNE_HAS_SSE2 && std::is_same_v<Score, float> && vector_projection<Proj>;

//! Counts the digit [lo_shift, lo_shift + bits) of every key whose bits above
//! hi_shift equal `prefix` (every key when !Filter) into `lanes` sub-histograms.
template <bool Filter, class Score, class Proj>
void histogram_piece(const Score* x, std::size_t n, const Proj& proj, std::uint32_t* lanes, int hi_shift,
                     order_key_t<Score> prefix, int lo_shift, order_key_t<Score> digit_mask,
                     order_key_t<Score>& nan_seen) {
#if CHILDTUNE_HAS_SSE2
    if constexpr (use_sse2_keys<Score, Proj>) {
        return histogram_piece_sse2<Filter, sign_clearing_projection<Proj>>(x, n, lanes, hi_shift, prefix, lo_shift, digit_mask,
                                                                 nan_seen);
    }
#endif
    using K = order_key_t<Score>;
    constexpr std::size_t stride = std::size_t{1} << max_digit_bits;
    K nan_acc = 0; // a local: `nan_seen` may alias the counters
    const auto count = [&](Score v, std::uint32_t* h) {
        const K u = std::bit_cast<K>(proj(v));
        if constexpr (!Filter) {
            nan_acc |= static_cast<K>(is_nan_bits<Score>(u));
            ++h[(key_from_bits<Score>(u) >> lo_shift) & digit_mask];
        } else {
            const K key = key_from_bits<Score>(u);
            if ((key >> hi_shift) == prefix) ++h[(key >> lo_shift) & digit_mask];
        }
    };
    std::size_t i = 0;
    for (; i + histogram_lanes <= n; i += histogram_lanes) {
        count(x[i], lanes);
        count(x[i + 1], lanes + stride);
        count(x[i + 2], lanes + 2 * stride);
        count(x[i + 3], lanes + 3 * stride);
    }
    for (; i < n; ++i) count(x[i], lanes);
    nan_seen |= nan_acc;
}

//! Copies the keys that carry `prefix` (all keys when !Filter) to `out`.
template <bool Filter, class Score, class Proj>
order_key_t<Score>* gather_piece(const Score* x, std::size_t n, const Proj& proj, order_key_t<Score>* out,
                                 int hi_shift, order_key_t<Score> prefix, order_key_t<Score>& nan_seen) {
#if CHILDTUNE_HAS_SSE2
    if constexpr (use_sse2_keys<Score, Proj> && Filter) {
        return gather_piece_sse2<sign_clearing_projection<Proj>>(x, n, out, hi_shift, prefix);
    }
#endif
    using K = order_key_t<Score>;
    for (std::size_t i = 0; i < n; ++i) {
        const K u = std::bit_cast<K>(proj(x[i]));
        const K key = key_from_bits<Score>(u);
        if constexpr (!Filter) {
            nan_seen |= static_cast<K>(is_nan_bits<Score>(u));
            *out++ = key;
        } else if ((key >> hi_shift) == prefix) {
            *out++ = key;
        }
    }
    return out;
}

//! Smallest key strictly greater than `bound` over all elements (all-ones when none).
template <score_element Score, class Proj, class Backend>
order_key_t<Score> min_key_above(const flat_segments<Score>& segs, const chunk_plan& plan, order_key_t<Score> bound,
                                 const Proj& proj, const Backend& backend) {
    using K = order_key_t<Score>;
    std::vector<K> partial(plan.count, ~K{0});
    backend.parallel_for(plan.count, [&](std::size_t c) {
        K best = ~K{0};
        segs.for_each_piece(plan.begin(c), plan.end(c), [&](const Score* x, std::size_t n) {
            for (std::size_t i = 0; i < n; ++i) {
                const K key = order_key<Score>(proj(x[i]));
                best = std::min(best, key > bound ? key : ~K{0});
            }
        });
        partial[c] = best;
    });
    K best = ~K{0};
    for (K v : partial) best = std::min(best, v);
    return best;
}

//! x[k] (and x[k+1] when `want_next`) of proj(x) over the flattened segments.
//! Reports a NaN instead of throwing, so callers can name the tensor. Requires k < size().
template <score_element Score, class Proj, class Backend>
select_outcome<Score> select_kth(const flat_segments<Score>& segs, std::size_t k, bool want_next, const Proj& proj,
                                 const Backend& backend) {
    using K = order_key_t<Score>;
    constexpr int key_bits = static_cast<int>(sizeof(K) * 8);
    constexpr std::size_t gather_capacity = gather_bytes / sizeof(K);
    constexpr std::size_t stride = std::size_t{1} << max_digit_bits;

    const std::size_t n = segs.size();
    const chunk_plan plan(n);
    select_outcome<Score> out;

    std::vector<std::size_t> chunk_candidates(plan.count);
    for (std::size_t c = 0; c < plan.count; ++c) chunk_candidates[c] = plan.end(c) - plan.begin(c);
    std::size_t candidates = n, rank = k, less = 0;
    K prefix = 0;
    int fixed = 0;
    std::vector<unsigned char> nan_chunk(plan.count, 0);

    const auto report_nan = [&]() {
        for (std::size_t c = 0; c < plan.count; ++c)
            if (nan_chunk[c]) {
                out.nan = find_first_nan(segs, plan.begin(c), plan.end(c), proj);
                if (out.nan.found) return true;
            }
        return false;
    };

    K key = 0, next_key = 0;
    std::size_t equal = 0;
    bool next_known = false;
    std::vector<std::uint32_t> hist;
    std::vector<std::size_t> totals;

    bool done = false;
    for (const int digit : order_key_traits<Score>::digit_bits) {
        if (candidates <= gather_capacity) break;
        const bool first = fixed == 0;
        const int hi_shift = key_bits - fixed;
        const int lo_shift = hi_shift - digit;
        const std::size_t buckets = std::size_t{1} << digit;
        const K digit_mask = static_cast<K>(buckets - 1);
        hist.assign(plan.count * buckets, 0);
        backend.parallel_for(plan.count, [&](std::size_t c) {
            if (chunk_candidates[c] == 0) return;
            std::array<std::uint32_t, histogram_lanes * stride> lanes;
            for (std::size_t l = 0; l < histogram_lanes; ++l)
                std::fill_n(lanes.data() + l * stride, buckets, std::uint32_t{0});
            K nan_seen = 0;
            segs.for_each_piece(plan.begin(c), plan.end(c), [&](const Score* x, std::size_t m) {
                if (first)
                    histogram_piece<false>(x, m, proj, lanes.data(), hi_shift, prefix, lo_shift, digit_mask, nan_seen);
                else
                    histogram_piece<true>(x, m, proj, lanes.data(), hi_shift, prefix, lo_shift, digit_mask, nan_seen);
            });
            std::uint32_t* row = hist.data() + c * buckets;
            for (std::size_t b = 0; b < buckets; ++b)
                row[b] = lanes[b] + lanes[stride + b] + lanes[2 * stride + b] + lanes[3 * stride + b];
            nan_chunk[c] = nan_seen != 0;
        });
        if (first && report_nan()) return out;

        totals.assign(buckets, 0);
        for (std::size_t c = 0; c < plan.count; ++c)
            for (std::size_t b = 0; b < buckets; ++b) totals[b] += hist[c * buckets + b];
        std::size_t bucket = 0;
        while (rank >= totals[bucket]) {
            rank -= totals[bucket];
            less += totals[bucket];
            ++bucket;
        }
        candidates = totals[bucket];
        for (std::size_t c = 0; c < plan.count; ++c) chunk_candidates[c] = hist[c * buckets + bucket];
        prefix = static_cast<K>((prefix << digit) | static_cast<K>(bucket));
        fixed += digit;
        if (fixed == key_bits) {
            key = prefix;
            equal = candidates;
            for (std::size_t b = bucket + 1; b < buckets && !next_known; ++b)
                if (totals[b] != 0) {
                    next_key = static_cast<K>((prefix & ~digit_mask) | static_cast<K>(b));
                    next_known = true;
                }
            done = true;
        }
    }

    if (!done) {
        // Finish in memory: every key with the current prefix, each chunk
        // writing at its own offset so the buffer does not depend on threads.
        std::vector<std::size_t> offsets(plan.count + 1, 0);
        for (std::size_t c = 0; c < plan.count; ++c) offsets[c + 1] = offsets[c] + chunk_candidates[c];
        std::vector<K> buffer(candidates);
        const bool first = fixed == 0;
        const int hi_shift = key_bits - fixed;
        backend.parallel_for(plan.count, [&](std::size_t c) {
            if (chunk_candidates[c] == 0) return;
            K nan_seen = 0;
            K* dst = buffer.data() + offsets[c];
            segs.for_each_piece(plan.begin(c), plan.end(c), [&](const Score* x, std::size_t m) {
                dst = first ? gather_piece<false>(x, m, proj, dst, hi_shift, prefix, nan_seen)
                            : gather_piece<true>(x, m, proj, dst, hi_shift, prefix, nan_seen);
            });
            nan_chunk[c] = nan_seen != 0;
        });
        if (first && report_nan()) return out;

        std::nth_element(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(rank), buffer.end());
        key = buffer[rank];
        std::size_t below = 0;
        next_key = ~K{0};
        for (const K v : buffer) {
            below += v < key;
            equal += v == key;
            if (v > key) {
                next_known = true;
                next_key = std::min(next_key, v);
            }
        }
        less += below;
    }

    out.pair.kth = {score_from_key<Score>(key), less, equal};
    out.pair.next = out.pair.kth.value;
    if (want_next && less + equal == k + 1 && k + 1 < n) {
        if (!next_known) next_key = min_key_above(segs, plan, key, proj, backend);
        out.pair.next = score_from_key<Score>(next_key);
    }
    return out;
}

template <score_element Score>
[[noreturn]] void fail_nan(const char* what, const nan_location& where) {
    fail(std::string(what) + ": score " + std::to_string(where.index) + " of segment " +
         std::to_string(where.segment) + " is NaN; NaN has no place in an order");
}

template <score_segment_range R, class Backend>
auto select_kth_checked(const R& segments, std::size_t k, bool want_next, const Backend& backend, const char* what) {
    using Score = segment_score_t<R>;
    const flat_segments<Score> segs(std::span<const std::span<const Score>>(std::ranges::data(segments),
                                                                            std::ranges::size(segments)));
    if (segs.size() == 0) fail(std::string(what) + ": the input holds no element");
    if (k >= segs.size())
        fail(std::string(what) + ": k = " + std::to_string(k) + " is out of range for " +
             std::to_string(segs.size()) + " elements");
    auto outcome = select_kth(segs, k, want_next, identity_projection{}, backend);
    if (outcome.nan.found) fail_nan<Score>(what, outcome.nan);
    return outcome.pair;
}

} // namespace detail

//! The k-th smallest (0-based) of all elements of `segments` taken together, with
//! the counts of elements below and equal to it. O(N) time, read-only on the
//! input; throws childtune::error for an empty input, k out of range or a NaN.
template <score_segment_range R, class Backend = default_backend>
kth_value<detail::segment_score_t<R>> select_kth(const R& segments, std::size_t k, const Backend& backend = {}) {
    return detail::select_kth_checked(segments, k, false, backend, "select_kth").kth;
}

//! x[k] and x[k+1] of the ascending order of all elements of `segments`. Costs
//! what select_kth costs, plus one read pass only when x[k] is the last copy of
//! its value and its successor is not already known from the last histogram.
template <score_segment_range R, class Backend = default_backend>
kth_pair<detail::segment_score_t<R>> select_kth_pair(const R& segments, std::size_t k, const Backend& backend = {}) {
    return detail::select_kth_checked(segments, k, true, backend, "select_kth_pair");
}

} // namespace childtune
