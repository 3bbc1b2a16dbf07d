#pragma once
//! \file
//! Global top-p selection over named score tensors: the cut that turns Fisher
//! scores into the fixed Child-Tuning_D mask (Xu et al. 2021, §2.2).
//!
//! Two rules. `percentile` reproduces the published Child-Tuning code bit for
//! bit: `polar = numpy.percentile(scores, (1 - p) * 100)`, `mask = score >= polar`,
//! so a user can compare masks with the reference. Because the rule keeps every
//! element tied with the cut, it may keep far more than p·N elements when scores
//! tie (e.g. many exact zeros). `exact_count` keeps exactly round(p·N) elements,
//! breaking ties by position, for users who need the budget the paper states.
//!
//! Cost: one exact order statistic (a few read passes, see order_statistic.hpp)
//! plus one pass writing the bit masks; extra memory is the masks plus ~1 MiB.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/select/order_statistic.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace childtune {

//! How the global cut is made; see the file comment.
enum class selection_rule {
    //! numpy.percentile(scores, (1-p)*100) with the 'linear' method, then score >= polar.
    percentile,
    //! Exactly round(p·N) elements (halves away from zero); ties kept in flattened order.
    exact_count,
};

//! One tensor's scores under its name; the name keys the resulting mask.
template <score_element Score>
struct named_scores {
    //! Name the mask is stored under (a view: the caller keeps the string alive).
    std::string_view name;
    //! The tensor's scores, one per element.
    std::span<const Score> scores;
};

//! The selected masks (one per tensor, in the order given), the threshold that
//! was applied (the polar cast to the score type for `percentile`; the
//! round(p·N)-th largest score for `exact_count`, +infinity when that count is
//! 0) and the number of kept elements over all tensors.
struct top_p_result {
    //! One mask per tensor, in the order given.
    mask_set masks;
    //! The threshold applied (see the struct comment).
    double threshold = 0;
    //! Elements kept over all tensors.
    std::size_t kept = 0;
};

namespace detail {

//! a*b rounded to double before it is used: numpy evaluates products and sums in
//! separate ufunc calls, so a fused multiply-add would change the last bit.
inline double rounded_product(double a, double b) {
    volatile double product = a * b;
    return product;
}

//! numpy 1.24 `_lerp(a, b, t)` for two scores: `diff = b - a` in the score type
//! (numpy subtracts two float32 scalars), then `a + diff*t` in double, replaced
//! by `b - diff*(1-t)` where t >= 0.5.
template <score_element Score>
double numpy_lerp(Score a, Score b, double t) {
    const Score diff = static_cast<Score>(b - a);
    if (t >= 0.5) return static_cast<double>(b) - rounded_product(static_cast<double>(diff), 1.0 - t);
    return static_cast<double>(a) + rounded_product(static_cast<double>(diff), t);
}

//! numpy's virtual index for the 'linear' method: q = ((1-p)*100)/100 exactly as
//! the reference passes it to numpy.percentile (which divides by 100 itself),
//! then (n-1)*q.
inline double numpy_virtual_index(std::size_t n, double p) {
    const double q = ((1.0 - p) * 100.0) / 100.0;
    return static_cast<double>(n - 1) * q;
}

//! Work item of the mask-writing pass: `words` 64-element words of one tensor.
struct mask_block {
    std::size_t tensor;
    std::size_t first_word;
    std::size_t words;
};

inline std::vector<mask_block> make_mask_blocks(std::span<const std::size_t> sizes) {
    constexpr std::size_t block_words = 4096;
    std::vector<mask_block> blocks;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        const std::size_t words = (sizes[t] + 63) / 64;
        for (std::size_t w = 0; w < words; w += block_words)
            blocks.push_back({t, w, std::min(block_words, words - w)});
    }
    return blocks;
}

//! The comparisons a mask bit is made of.
enum class compare_op { greater_equal, greater, equal };

template <compare_op Op, class T>
CHILDTUNE_ALWAYS_INLINE bool compare(T v, T t) {
    if constexpr (Op == compare_op::greater_equal) return v >= t;
    else if constexpr (Op == compare_op::greater) return v > t;
    else return v == t;
}

#if CHILDTUNE_HAS_SSE2
//! One full word of float or double comparisons, 4 or 2 at a time (ordered
//! comparisons: false for NaN, -0 == +0, as in scalar code), of the scores or,
//! when Abs, of their magnitudes (sign bits cleared, as std::fabs).
template <compare_op Op, bool Abs, class Score>
CHILDTUNE_ALWAYS_INLINE std::uint64_t pack_word_sse2(const Score* x, Score t) {
    std::uint64_t bits = 0;
    if constexpr (std::is_same_v<Score, float>) {
        const __m128 tv = _mm_set1_ps(t);
        const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
        for (std::size_t j = 0; j < 64; j += 4) {
            __m128 v = _mm_loadu_ps(x + j);
            if constexpr (Abs) v = _mm_and_ps(v, magnitude);
            __m128 c;
            if constexpr (Op == compare_op::greater_equal) c = _mm_cmpge_ps(v, tv);
            else if constexpr (Op == compare_op::greater) c = _mm_cmpgt_ps(v, tv);
            else c = _mm_cmpeq_ps(v, tv);
            bits |= static_cast<std::uint64_t>(_mm_movemask_ps(c)) << j;
        }
    } else {
        const __m128d tv = _mm_set1_pd(t);
        const __m128d magnitude = _mm_castsi128_pd(_mm_set1_epi64x(0x7FFFFFFFFFFFFFFF));
        for (std::size_t j = 0; j < 64; j += 2) {
            __m128d v = _mm_loadu_pd(x + j);
            if constexpr (Abs) v = _mm_and_pd(v, magnitude);
            __m128d c;
            if constexpr (Op == compare_op::greater_equal) c = _mm_cmpge_pd(v, tv);
            else if constexpr (Op == compare_op::greater) c = _mm_cmpgt_pd(v, tv);
            else c = _mm_cmpeq_pd(v, tv);
            bits |= static_cast<std::uint64_t>(_mm_movemask_pd(c)) << j;
        }
    }
    return bits;
}
#endif

//! Bits of elements x[0..n) (n <= 64) with proj(x[j]) `Op` t.
template <compare_op Op, class Score, class Proj>
CHILDTUNE_ALWAYS_INLINE std::uint64_t pack_bits(const Score* x, std::size_t n, const Proj& proj, Score t) {
#if CHILDTUNE_HAS_SSE2
    if constexpr (vector_projection<Proj>)
        if (n == 64) return pack_word_sse2<Op, sign_clearing_projection<Proj>>(x, t);
#endif
    std::uint64_t bits = 0;
    for (std::size_t j = 0; j < n; ++j) bits |= static_cast<std::uint64_t>(compare<Op>(proj(x[j]), t)) << j;
    return bits;
}

//! Set bits of w; std::popcount is a library call on x86-64 without -mpopcnt.
CHILDTUNE_HD_INLINE std::size_t popcount64(std::uint64_t w) {
#if defined(__CUDA_ARCH__)
    return static_cast<std::size_t>(__popcll(w));
#elif defined(__POPCNT__) || !(defined(__x86_64__) || defined(_M_X64))
    return static_cast<std::size_t>(std::popcount(w));
#else
    w = w - ((w >> 1) & 0x5555555555555555u);
    w = (w & 0x3333333333333333u) + ((w >> 2) & 0x3333333333333333u);
    w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0Fu;
    return static_cast<std::size_t>((w * 0x0101010101010101u) >> 56);
#endif
}

//! Keeps the lowest `count` set bits of w.
CHILDTUNE_HD inline std::uint64_t lowest_set_bits(std::uint64_t w, std::size_t count) {
    if (count >= popcount64(w)) return w;
    std::uint64_t kept = 0;
    for (std::size_t i = 0; i < count; ++i) {
        kept |= w & (~w + 1);
        w &= w - 1;
    }
    return kept;
}

//! Where the global cut falls: keep proj(x) > threshold, and of the elements
//! equal to it either all (`keep_all_ties`) or the first `tie_budget` in
//! flattened order. Shared by the CPU selection and the Thrust adapter's.
template <score_element Score>
struct top_p_cut {
    Score threshold{};
    bool keep_all_ties = true;
    std::size_t tie_budget = 0;
    bool exact_count = false;
    //! exact_count with an empty budget keeps no element at all.
    bool keeps_nothing() const { return exact_count && tie_budget == 0 && !keep_all_ties; }
};

//! The cut for n >= 1 scores, p in (0, 1] and `rule`; `select(k, want_next)`
//! returns the kth_pair of the k-th smallest score (and the next one when asked).
template <score_element Score, class Select>
top_p_cut<Score> make_top_p_cut(std::size_t n, double p, selection_rule rule, Select&& select) {
    top_p_cut<Score> cut;
    if (rule == selection_rule::percentile) {
        // numpy._quantile: indexes at or past n-1 take the last element for both
        // neighbours, and gamma is then measured from index -1.
        const double virtual_index = numpy_virtual_index(n, p);
        Score a, b;
        double gamma;
        if (virtual_index >= static_cast<double>(n - 1)) {
            a = b = select(n - 1, false).kth.value;
            gamma = virtual_index + 1.0;
        } else {
            const double lo = std::floor(virtual_index);
            const auto pair = select(static_cast<std::size_t>(lo), true);
            a = pair.kth.value;
            b = pair.next;
            gamma = virtual_index - lo;
        }
        cut.threshold = static_cast<Score>(numpy_lerp(a, b, gamma));
        return cut;
    }
    cut.exact_count = true;
    const auto keep = static_cast<std::size_t>(std::llround(p * static_cast<double>(n)));
    if (keep == 0) {
        cut.threshold = std::numeric_limits<Score>::infinity();
        cut.keep_all_ties = false;
    } else {
        const auto kth = select(n - keep, false).kth;
        cut.threshold = kth.value;
        cut.tie_budget = keep - (n - kth.less_equal());
        cut.keep_all_ties = cut.tie_budget == kth.equal;
    }
    return cut;
}

//! Selection over already validated tensors (names unique and non-empty,
//! p in (0, 1], at least one element); scores are proj(stored score).
template <score_element Score, class Proj, class Backend>
top_p_result select_top_p(std::span<const std::string_view> names, std::span<const std::span<const Score>> tensors,
                          double p, selection_rule rule, const Proj& proj, const Backend& backend) {
    const flat_segments<Score> segs(tensors);
    const std::size_t n = segs.size();

    const auto select = [&](std::size_t k, bool want_next) {
        auto outcome = detail::select_kth(segs, k, want_next, proj, backend);
        if (outcome.nan.found)
            fail("top-p selection: score " + std::to_string(outcome.nan.index) + " of tensor '" +
                 std::string(names[outcome.nan.segment]) + "' is NaN");
        return outcome.pair;
    };

    const top_p_cut<Score> cut = make_top_p_cut<Score>(n, p, rule, select);
    const Score threshold = cut.threshold;
    const std::size_t tie_budget = cut.tie_budget;
    top_p_result result;
    result.threshold = static_cast<double>(threshold);

    std::vector<std::size_t> sizes(tensors.size());
    for (std::size_t t = 0; t < tensors.size(); ++t) sizes[t] = tensors[t].size();
    const auto blocks = make_mask_blocks(sizes);
    std::vector<bit_mask> masks;
    masks.reserve(tensors.size());
    for (const auto size : sizes) masks.emplace_back(size);
    std::vector<std::size_t> kept(blocks.size(), 0);

    const auto word_span = [&](const mask_block& block, std::size_t w) {
        const std::size_t first = (block.first_word + w) * 64;
        return std::pair{tensors[block.tensor].data() + first, std::min<std::size_t>(64, sizes[block.tensor] - first)};
    };

    if (cut.keeps_nothing()) {
        // The masks are already all zero.
    } else if (cut.keep_all_ties) {
        backend.parallel_for(blocks.size(), [&](std::size_t i) {
            const auto& block = blocks[i];
            std::uint64_t* words = masks[block.tensor].words().data() + block.first_word;
            std::size_t count = 0;
            for (std::size_t w = 0; w < block.words; ++w) {
                const auto [x, m] = word_span(block, w);
                words[w] = pack_bits<compare_op::greater_equal>(x, m, proj, threshold);
                count += popcount64(words[w]);
            }
            kept[i] = count;
        });
    } else {
        // Ties are kept in flattened order: count them per block first, so each
        // block knows how many of the budget precede it.
        std::vector<std::size_t> ties(blocks.size(), 0);
        backend.parallel_for(blocks.size(), [&](std::size_t i) {
            std::size_t count = 0;
            for (std::size_t w = 0; w < blocks[i].words; ++w) {
                const auto [x, m] = word_span(blocks[i], w);
                count += popcount64(pack_bits<compare_op::equal>(x, m, proj, threshold));
            }
            ties[i] = count;
        });
        std::size_t before = 0;
        for (auto& t : ties) before += std::exchange(t, before);
        backend.parallel_for(blocks.size(), [&](std::size_t i) {
            const auto& block = blocks[i];
            std::uint64_t* words = masks[block.tensor].words().data() + block.first_word;
            std::size_t seen = ties[i], count = 0;
            for (std::size_t w = 0; w < block.words; ++w) {
                const auto [x, m] = word_span(block, w);
                std::uint64_t bits = pack_bits<compare_op::greater>(x, m, proj, threshold);
                if (seen < tie_budget) {
                    const std::uint64_t eq = pack_bits<compare_op::equal>(x, m, proj, threshold);
                    bits |= lowest_set_bits(eq, tie_budget - seen);
                    seen += popcount64(eq);
                }
                words[w] = bits;
                count += popcount64(bits);
            }
            kept[i] = count;
        });
    }
    for (const auto c : kept) result.kept += c;
    for (std::size_t t = 0; t < tensors.size(); ++t) result.masks.add(std::string(names[t]), std::move(masks[t]));
    return result;
}

inline void check_top_p_input(std::span<const std::string_view> names, double p, std::size_t total) {
    if (!(p > 0.0 && p <= 1.0))
        fail("top-p selection: p = " + format_number(p) + " is outside (0, 1]; p is the fraction of scores kept");
    std::unordered_set<std::string_view> seen;
    for (const auto name : names) {
        if (name.empty()) fail("top-p selection: a tensor name must not be empty");
        if (!seen.insert(name).second) fail("top-p selection: tensor '" + std::string(name) + "' is given twice");
    }
    if (total == 0) fail("top-p selection: there is no score to select from");
}

} // namespace detail

//! Keeps the top p fraction of all scores of `tensors` taken together (one
//! global cut, as in Child-Tuning_D) and returns one bit mask per tensor, keyed
//! by its name. p must be in (0, 1]; names must be unique and non-empty; at least
//! one score must exist and none may be NaN; otherwise childtune::error.
//! The result does not depend on the backend or its thread count.
template <named_score_range R, class Backend = default_backend>
top_p_result select_top_p(const R& tensors, double p, selection_rule rule = selection_rule::percentile,
                          const Backend& backend = {}) {
    using Score = typename detail::named_scores_traits<std::ranges::range_value_t<R>>::score;
    std::vector<std::string_view> names;
    std::vector<std::span<const Score>> spans;
    std::size_t total = 0;
    for (const auto& t : tensors) {
        names.push_back(t.name);
        spans.push_back(t.scores);
        total += t.scores.size();
    }
    detail::check_top_p_input(names, p, total);
    return detail::select_top_p<Score>(names, spans, p, rule, detail::identity_projection{}, backend);
}

} // namespace childtune
