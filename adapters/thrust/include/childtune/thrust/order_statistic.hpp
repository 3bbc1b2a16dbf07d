#pragma once
//! \file
//! The exact k-th smallest score over score arrays in a Thrust system's memory:
//! the same most-significant-digit radix select over order-preserving keys of the
//! float bits as the core (select/order_statistic.hpp), so the value and its
//! less/equal counts are the CPU's, bit for bit.
//!
//! Each pass builds one histogram of the next digit (11, 11 and 10 bits for
//! float; six digits for double) over the elements whose higher digits match the
//! prefix found so far, and reads it on the host to pick the bucket holding k.
//! Nothing is sorted or copied: a pass reads the scores once and writes 2049
//! counters (the 2048 digits and NaN). Counts are integers, so the result does not
//! depend on the system, its thread count or the order of atomic updates.
//!
//! On CUDA the histogram is CUB's (privatised in shared memory); on the CPU
//! systems each of at most 128 fixed chunks counts into its own row.

#include <childtune/error.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/execution_policy.h>
#include <thrust/find.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#include <cub/device/device_histogram.cuh>
#endif

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! One tensor's scores in the system's memory, under its name (named in errors
//! and keying the resulting masks).
template <score_element Score>
struct device_scores {
    //! Tensor name (a view: the caller keeps the string alive).
    std::string_view name;
    //! The scores, in the system's memory.
    const Score* scores = nullptr;
    //! Number of scores.
    std::uint64_t size = 0;
};

namespace detail {

using childtune::detail::identity_projection;
using childtune::detail::order_key_t;

//! Histogram bins of one pass: every digit value, then one bin counting NaNs.
inline constexpr int digit_bins = 1 << childtune::detail::max_digit_bits;
inline constexpr int nan_bin = digit_bins;
inline constexpr int histogram_bins = digit_bins + 1;

//! The bin of one score in a pass: its digit below `lo_shift`, -1 (not counted)
//! when its higher digits differ from the prefix, nan_bin for a NaN.
template <score_element Score, class Proj>
struct digit_of {
    Proj proj;
    order_key_t<Score> prefix;
    int hi_shift; //!< bits above the prefix; the key width in the first pass
    int lo_shift;
    order_key_t<Score> digit_mask;

    CHILDTUNE_HD int operator()(Score x) const {
        const Score y = proj(x);
        if (y != y) return nan_bin;
        const order_key_t<Score> key = childtune::detail::order_key(y);
        if (hi_shift < static_cast<int>(sizeof(key) * 8) && (key >> hi_shift) != prefix) return -1;
        return static_cast<int>((key >> lo_shift) & digit_mask);
    }
};

//! Adds this pass's histogram over `n` scores at `x` into `counts`.
template <score_element Score, class Proj, class Policy>
void add_histogram(const Policy& policy, const Score* x, std::uint64_t n, const digit_of<Score, Proj>& digit,
                   std::array<std::uint64_t, histogram_bins>& counts) {
    if (n == 0) return;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    // CUB counts in 32 bits and indexes with int: pieces of at most 2^30 samples.
    constexpr std::uint64_t piece = std::uint64_t{1} << 30;
    const cudaStream_t stream = stream_of(policy);
    scratch<unsigned, Policy> bins(policy, histogram_bins, "a selection histogram");
    std::array<unsigned, histogram_bins> host{};
    std::size_t temp_bytes = 0;
    const auto samples = ::thrust::make_transform_iterator(x, digit);
    check_cuda(cub::DeviceHistogram::HistogramEven(nullptr, temp_bytes, samples, bins.get(), histogram_bins + 1, 0,
                                                   histogram_bins, static_cast<int>(std::min(n, piece)), stream),
               "selection histogram");
    scratch<unsigned char, Policy> temp(policy, temp_bytes, "a selection histogram");
    for (std::uint64_t first = 0; first < n; first += piece) {
        const int count = static_cast<int>(std::min(piece, n - first));
        check_cuda(cub::DeviceHistogram::HistogramEven(temp.get(), temp_bytes, samples + first, bins.get(),
                                                       histogram_bins + 1, 0, histogram_bins, count, stream),
                   "selection histogram");
        copy_to_host(policy, bins.get(), histogram_bins, host.data());
        for (int b = 0; b < histogram_bins; ++b) counts[b] += host[b];
    }
#else
    // Fixed chunks, each counting into its own row; rows are added on the host.
    const std::uint64_t chunks = std::min<std::uint64_t>(128, (n + 65535) / 65536);
    const std::uint64_t chunk = (n + chunks - 1) / chunks;
    scratch<std::uint64_t, Policy> rows(policy, chunks * histogram_bins, "a selection histogram");
    std::uint64_t* out = rows.get();
    ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                       ::thrust::counting_iterator<std::uint64_t>(chunks), [=](std::uint64_t c) {
                           std::uint64_t* row = out + c * histogram_bins;
                           for (int b = 0; b < histogram_bins; ++b) row[b] = 0;
                           const std::uint64_t last = std::min(n, (c + 1) * chunk);
                           for (std::uint64_t i = c * chunk; i < last; ++i) {
                               const int d = digit(x[i]);
                               if (d >= 0) ++row[d];
                           }
                       });
    std::vector<std::uint64_t> host(chunks * histogram_bins);
    copy_to_host(policy, out, host.size(), host.data());
    for (std::uint64_t c = 0; c < chunks; ++c)
        for (int b = 0; b < histogram_bins; ++b) counts[b] += host[c * histogram_bins + b];
#endif
}

//! The smallest key above `floor` (the key type's maximum when there is none).
template <score_element Score, class Proj>
struct key_above {
    Proj proj;
    order_key_t<Score> floor;
    CHILDTUNE_HD order_key_t<Score> operator()(Score x) const {
        const order_key_t<Score> key = childtune::detail::order_key(proj(x));
        return key > floor ? key : ~order_key_t<Score>{0};
    }
};

template <class Proj>
struct is_nan_score {
    Proj proj;
    template <class Score>
    CHILDTUNE_HD bool operator()(Score x) const {
        const Score y = proj(x);
        return y != y;
    }
};

//! x[k] (and x[k+1] when `want_next`) of the ascending order of all scores of
//! `tensors`, k < their total size; throws naming the first NaN's tensor and index.
template <score_element Score, class Proj, class Policy>
kth_pair<Score> select_kth(const Policy& policy, std::span<const device_scores<Score>> tensors, std::uint64_t k,
                           bool want_next, const Proj& proj) {
    using K = order_key_t<Score>;
    constexpr int key_bits = static_cast<int>(sizeof(K) * 8);
    constexpr auto digits = childtune::detail::order_key_traits<Score>::digit_bits;

    K prefix = 0;
    int hi_shift = key_bits;
    std::uint64_t less = 0, rank = k; // rank: k among the elements that match the prefix
    std::uint64_t equal = 0;
    for (std::size_t pass = 0; pass < digits.size(); ++pass) {
        const int lo_shift = hi_shift - digits[pass];
        const digit_of<Score, Proj> digit{proj, prefix, hi_shift, lo_shift, static_cast<K>((K{1} << digits[pass]) - 1)};
        std::array<std::uint64_t, histogram_bins> counts{};
        for (const auto& t : tensors) add_histogram(policy, t.scores, t.size, digit, counts);
        if (pass == 0 && counts[nan_bin] != 0) {
            for (const auto& t : tensors) {
                const Score* hit = ::thrust::find_if(policy, t.scores, t.scores + t.size, is_nan_score<Proj>{proj});
                if (hit != t.scores + t.size)
                    childtune::detail::fail("top-p selection: score " + std::to_string(hit - t.scores) + " of tensor '" +
                                            std::string(t.name) + "' is NaN");
            }
        }
        int bucket = 0;
        while (rank >= counts[static_cast<std::size_t>(bucket)]) rank -= counts[static_cast<std::size_t>(bucket++)];
        for (int b = 0; b < bucket; ++b) less += counts[static_cast<std::size_t>(b)];
        equal = counts[static_cast<std::size_t>(bucket)];
        prefix = static_cast<K>((prefix << digits[pass]) | static_cast<K>(bucket));
        hi_shift = lo_shift;
    }

    kth_pair<Score> out;
    out.kth = {childtune::detail::score_from_key<Score>(prefix), less, equal};
    out.next = out.kth.value;
    std::uint64_t n = 0;
    for (const auto& t : tensors) n += t.size;
    if (want_next && less + equal == k + 1 && k + 1 < n) {
        K next = ~K{0};
        for (const auto& t : tensors)
            if (t.size != 0)
                next = std::min(next, ::thrust::transform_reduce(policy, t.scores, t.scores + t.size,
                                                                 key_above<Score, Proj>{proj, prefix}, ~K{0},
                                                                 ::thrust::minimum<K>()));
        out.next = childtune::detail::score_from_key<Score>(next);
    }
    return out;
}

} // namespace detail

//! The k-th smallest (0-based) of all scores of `tensors` taken together, with
//! its less/equal counts: the core's kth_value, computed in the system's memory.
//! Throws childtune::error when k is out of range or a score is NaN.
template <score_element Score, class Policy>
kth_value<Score> select_kth(const Policy& policy, std::span<const device_scores<Score>> tensors, std::uint64_t k) {
    detail::require_device_policy<Policy>();
    std::uint64_t n = 0;
    for (const auto& t : tensors) n += t.size;
    if (k >= n)
        childtune::detail::fail("order statistic: k = " + std::to_string(k) + " but there are " + std::to_string(n) +
                                " scores");
    return detail::select_kth<Score>(policy, tensors, k, false, detail::identity_projection{}).kth;
}

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
