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
    Score value{};
    std::size_t less = 0;
    std::size_t equal = 0;
    std::size_t less_equal() const { return less + equal; }
};

//! x[k] and x[k+1] of the ascending order (`next == kth.value` when k is the last
//! index): the two neighbours numpy's linear percentile interpolates between.
template <score_element Score>
struct kth_pair {
    kth_value<Score> kth;
    Score next{};
};

namespace detail {

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

template <score_element Score>
struct select_outcome {
    kth_pair<Score> pair;
    nan_location nan;
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

#if CHILDTUNE_HAS_SSE2
//! Four float order keys at once (key_from_bits, lane by lane).
CHILDTUNE_ALWAYS_INLINE __m128i order_keys_sse2(__m128i u) {
    const __m128i sign = _mm_set1_epi32(std::numeric_limits<int>::min());
    u = _mm_andnot_si128(_mm_cmpeq_epi32(u, sign), u);
    return _mm_xor_si128(u, _mm_or_si128(_mm_srai_epi32(u, 31), sign));
}

//! Bit j set where lane j of the 8 keys in (k0, k1) carries `prefix` above hi.
CHILDTUNE_ALWAYS_INLINE unsigned prefix_matches_sse2(__m128i k0, __m128i k1, __m128i hi, __m128i prefix) {
    const int m0 = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_srl_epi32(k0, hi), prefix)));
    const int m1 = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_srl_epi32(k1, hi), prefix)));
    return static_cast<unsigned>(m0 | (m1 << 4));
}

//! histogram_piece for float scores, 8 keys per step: the keys, the prefix test
//! and the NaN test in vectors, the counting in scalar code.
template <bool Filter>
void histogram_piece_sse2(const float* x, std::size_t n, std::uint32_t* lanes, int hi_shift, std::uint32_t prefix,
                          int lo_shift, std::uint32_t digit_mask, std::uint32_t& nan_seen) {
    constexpr std::size_t stride = std::size_t{1} << max_digit_bits;
    const __m128i hi = _mm_cvtsi32_si128(hi_shift), lo = _mm_cvtsi32_si128(lo_shift);
    const __m128i pre = _mm_set1_epi32(static_cast<int>(prefix));
    const __m128i magnitude = _mm_set1_epi32(0x7FFFFFFF), infinity = _mm_set1_epi32(0x7F800000);
    __m128i nan = _mm_setzero_si128();
    alignas(16) std::uint32_t d[8];
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i u0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
        const __m128i u1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 4));
        const __m128i k0 = order_keys_sse2(u0), k1 = order_keys_sse2(u1);
        if constexpr (!Filter) {
            nan = _mm_or_si128(nan, _mm_cmpgt_epi32(_mm_and_si128(u0, magnitude), infinity));
            nan = _mm_or_si128(nan, _mm_cmpgt_epi32(_mm_and_si128(u1, magnitude), infinity));
            _mm_store_si128(reinterpret_cast<__m128i*>(d), _mm_srl_epi32(k0, lo));
            _mm_store_si128(reinterpret_cast<__m128i*>(d + 4), _mm_srl_epi32(k1, lo));
            ++lanes[d[0]];
            ++lanes[stride + d[1]];
            ++lanes[2 * stride + d[2]];
            ++lanes[3 * stride + d[3]];
            ++lanes[d[4]];
            ++lanes[stride + d[5]];
            ++lanes[2 * stride + d[6]];
            ++lanes[3 * stride + d[7]];
        } else {
            unsigned hits = prefix_matches_sse2(k0, k1, hi, pre);
            if (hits != 0) {
                _mm_store_si128(reinterpret_cast<__m128i*>(d), _mm_srl_epi32(k0, lo));
                _mm_store_si128(reinterpret_cast<__m128i*>(d + 4), _mm_srl_epi32(k1, lo));
                for (; hits != 0; hits &= hits - 1) {
                    const auto j = static_cast<std::size_t>(std::countr_zero(hits));
                    ++lanes[(j & 3) * stride + (d[j] & digit_mask)];
                }
            }
        }
    }
    if (_mm_movemask_epi8(nan) != 0) nan_seen = 1;
    for (; i < n; ++i) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(x[i]);
        const std::uint32_t key = key_from_bits<float>(u);
        if constexpr (!Filter) {
            nan_seen |= static_cast<std::uint32_t>(is_nan_bits<float>(u));
            ++lanes[key >> lo_shift];
        } else if ((key >> hi_shift) == prefix) {
            ++lanes[(key >> lo_shift) & digit_mask];
        }
    }
}

//! gather_piece for float scores and a prefix, 8 keys per step.
inline std::uint32_t* gather_piece_sse2(const float* x, std::size_t n, std::uint32_t* out, int hi_shift,
                                        std::uint32_t prefix) {
    const __m128i hi = _mm_cvtsi32_si128(hi_shift);
    const __m128i pre = _mm_set1_epi32(static_cast<int>(prefix));
    alignas(16) std::uint32_t k[8];
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i k0 = order_keys_sse2(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
        const __m128i k1 = order_keys_sse2(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 4)));
        unsigned hits = prefix_matches_sse2(k0, k1, hi, pre);
        if (hits != 0) {
            _mm_store_si128(reinterpret_cast<__m128i*>(k), k0);
            _mm_store_si128(reinterpret_cast<__m128i*>(k + 4), k1);
            for (; hits != 0; hits &= hits - 1) *out++ = k[std::countr_zero(hits)];
        }
    }
    for (; i < n; ++i) {
        const std::uint32_t key = order_key(x[i]);
        if ((key >> hi_shift) == prefix) *out++ = key;
    }
    return out;
}
#endif

//! True where the vector kernels apply: float scores read as stored.
template <class Score, class Proj>
inline constexpr bool use_sse2_keys =
    CHILDTUNE_HAS_SSE2 && std::is_same_v<Score, float> && std::is_same_v<Proj, identity_projection>;

//! Counts the digit [lo_shift, lo_shift + bits) of every key whose bits above
//! hi_shift equal `prefix` (every key when !Filter) into `lanes` sub-histograms.
template <bool Filter, class Score, class Proj>
void histogram_piece(const Score* x, std::size_t n, const Proj& proj, std::uint32_t* lanes, int hi_shift,
                     order_key_t<Score> prefix, int lo_shift, order_key_t<Score> digit_mask,
                     order_key_t<Score>& nan_seen) {
#if CHILDTUNE_HAS_SSE2
    if constexpr (use_sse2_keys<Score, Proj>) {
        return histogram_piece_sse2<Filter>(x, n, lanes, hi_shift, prefix, lo_shift, digit_mask, nan_seen);
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
        return gather_piece_sse2(x, n, out, hi_shift, prefix);
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
