#pragma once
//! \file
//! Fisher-information scores for Child-Tuning_D (Xu et al. 2021, §2.2).
//!
//! Child-Tuning_D picks the child network once, before fine-tuning, as the
//! parameters with the largest diagonal empirical Fisher information
//! F_i = 1/N Σ_batches (∂L/∂w_i)², estimated on the task's training data; the
//! mask is then the global top-p_D of the scores (select/top_p.hpp). This class
//! does the estimate the way the published code does it, so that masks can be
//! compared with the reference:
//!
//!     for batch in train_dataloader:                       # N = len(train_dataloader)
//!         loss.backward()
//!         for name, param in model.named_parameters():
//!             if 'layer' in name:                          # add_tensor() chooses these
//!                 clip_grad_norm_(param, max_grad_norm)    # each tensor on its own
//!                 score[param] += param.grad ** 2 / N
//!         model.zero_grad()
//!
//! Differences, all deliberate: the clipping norm is computed in double with a
//! fixed blocked summation (torch sums in float32 in an order of its own), so the
//! clip coefficient may differ from torch's in the last float bit; gradients of
//! every storage type are widened to the score type before they are clipped and
//! squared (torch would round a bfloat16 product to bfloat16); a non-finite
//! gradient is rejected instead of poisoning the scores.

#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/mask/keep_ratio.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/rounding.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace childtune {

//! How gradients become Fisher scores.
struct fisher_options {
    //! Per-tensor gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`
    //! applied to one tensor at a time (the reference's `args.max_grad_norm`);
    //! 0 disables clipping.
    double max_grad_norm = 0;
    //! N, the number of batches the scores average over. Known N adds g²/N per
    //! batch, in the score type and in that order, as the reference does. 0 means
    //! unknown: g² is summed and divided by batches() when the scores are read.
    std::size_t num_batches = 0;
};

namespace detail {

//! Elements per block of the clipping norm, and lanes per block. A block's sum is
//! the fixed pairwise tree over its lanes' sums, lane j summing elements j,
//! j + lanes, j + 2·lanes, ... in order; block sums are then added in block
//! order. The layout is that of a GPU thread block striding through its block, so
//! the Thrust adapter computes the same norm bit for bit on the device, and the
//! norm never depends on the backend or its thread count.
inline constexpr std::size_t fisher_block = std::size_t{1} << 16;
inline constexpr std::size_t fisher_lanes = 256;

//! g² (or (g / scale)² when Scaled), in double; a product of widened float,
//! bfloat16 or float16 values is exact, a double one is rounded without fusing.
template <bool Scaled, parameter_element G>
CHILDTUNE_HD_INLINE double scaled_square(G g, double scale) {
    double v = widen<double>(g);
    if constexpr (Scaled) v = v / scale;
    return mul_rn(v, v);
}

//! The fixed pairwise tree over fisher_lanes lane sums (overwrites `lanes`).
CHILDTUNE_HD_INLINE double fisher_lane_tree(double* lanes) {
    for (std::size_t stride = fisher_lanes / 2; stride > 0; stride /= 2)
        for (std::size_t j = 0; j < stride; ++j) lanes[j] = lanes[j] + lanes[j + stride];
    return lanes[0];
}

//! Σ g² (Σ (g/scale)² when Scaled) of one block of n <= fisher_block elements,
//! in the fixed order.
template <bool Scaled = false, parameter_element G>
double block_sum_of_squares(const G* g, std::size_t n, double scale = 1.0) {
    double lanes[fisher_lanes] = {};
    std::size_t i = 0;
    for (; i + fisher_lanes <= n; i += fisher_lanes)
        for (std::size_t j = 0; j < fisher_lanes; ++j) lanes[j] = lanes[j] + scaled_square<Scaled>(g[i + j], scale);
    for (std::size_t j = 0; i + j < n; ++j) lanes[j] = lanes[j] + scaled_square<Scaled>(g[i + j], scale);
    return fisher_lane_tree(lanes);
}

//! One gradient element's contribution to its Fisher score: (g·coef)² when
//! clipped, divided by N when N is known. The products never fuse (mul_rn), so
//! host and device scores agree bit for bit.
template <score_element Score, bool Clip, bool Known>
struct fisher_term {
    Score coef;
    Score batches;
    CHILDTUNE_HD_INLINE Score operator()(Score v) const {
        if constexpr (Clip) v = mul_rn(v, coef);
        const Score square = mul_rn(v, v);
        if constexpr (Known) return square / batches;
        else return square;
    }
};

//! The clip coefficient of a tensor whose gradient norm is `norm` (1 when
//! clipping is off or not needed), as torch.nn.utils.clip_grad_norm_ computes it.
struct fisher_clip {
    double coef = 1.0;
    bool clip = false;
};
inline fisher_clip clip_for_norm(double max_grad_norm, double norm) {
    if (max_grad_norm > 0) {
        const double c = max_grad_norm / (norm + 1e-6);
        if (c < 1.0) return {c, true};
    }
    return {};
}

//! Calls f(std::integral_constant<bool, Clip>, std::integral_constant<bool, Known>).
template <class F>
void with_fisher_term(bool clip, bool known, F&& f) {
    using yes = std::true_type;
    using no = std::false_type;
    if (clip && known) f(yes{}, yes{});
    else if (known) f(no{}, yes{});
    else if (clip) f(yes{}, no{});
    else f(no{}, no{});
}

//! With N declared, every score was divided by N: selecting after another
//! number of batches would rank scores scaled by batches/N without a word.
inline void check_fisher_batches(const char* who, std::size_t declared, std::size_t ended) {
    if (declared != 0 && ended != declared)
        fail(std::string(who) + ": select() after " + std::to_string(ended) + " batches, but num_batches = " +
             std::to_string(declared) + " was declared (every score was divided by it); end all " +
             std::to_string(declared) + " batches, or declare num_batches = 0 when the count is not known in advance");
}

} // namespace detail

//! Accumulates Child-Tuning_D Fisher scores over the batches of a training set
//! and selects the fixed mask from them.
//!
//! Usage: add_tensor() every tensor that takes part (the reference uses the
//! encoder layers; embeddings and the task head usually train densely), then per
//! batch accumulate() each of their gradients once and end_batch(), then select().
//! Every member that throws childtune::error leaves the accumulator unchanged.
template <score_element Score = float>
class fisher_accumulator {
public:
    //! Throws childtune::error when max_grad_norm is negative or not finite.
    explicit fisher_accumulator(fisher_options options = {}) : options_(options) {
        if (!(options.max_grad_norm >= 0.0) || !std::isfinite(options.max_grad_norm))
            detail::fail("fisher_accumulator: max_grad_norm = " + detail::format_number(options.max_grad_norm) +
                         " must be finite and >= 0 (0 disables clipping)");
    }

    //! The options given at construction.
    const fisher_options& options() const { return options_; }

    //! Registers tensor `name` of `size` elements; its scores start at zero. The
    //! registration order is the order of select()'s masks.
    void add_tensor(std::string name, std::size_t size) {
        if (name.empty()) detail::fail("fisher_accumulator: a tensor name must not be empty");
        if (size == 0) detail::fail("fisher_accumulator: tensor '" + name + "' has no element");
        // Otherwise std::vector would throw a std::length_error naming nothing.
        if (size > detail::max_tensor_elements<Score>)
            detail::fail("fisher_accumulator: tensor '" + name + "' has " + std::to_string(size) +
                         " elements, more than the address space holds");
        if (index_.contains(name)) detail::fail("fisher_accumulator: tensor '" + name + "' added twice");
        if (batch_open()) detail::fail("fisher_accumulator: tensor '" + name + "' added in the middle of a batch");
        tensors_.push_back({name, std::vector<Score>(size, Score{0}), false});
        try {
            index_.emplace(std::move(name), tensors_.size() - 1);
        } catch (...) {
            tensors_.pop_back();
            throw;
        }
    }

    //! Adds this batch's gradient of tensor `name`: clipped to max_grad_norm (if
    //! set) on its own, squared, and divided by N when N is known. Throws, naming
    //! the tensor, for an unknown name, a size mismatch, a non-finite gradient, a
    //! second gradient of the tensor in the same batch, or a batch past N.
    template <parameter_element G, class Backend = default_backend>
    void accumulate(std::string_view name, tensor_view<const G> grad, const Backend& backend = {}) {
        entry& t = find(name, "accumulate");
        if (grad.size() != t.scores.size())
            detail::fail("fisher_accumulator: gradient of tensor '" + t.name + "' has " +
                         std::to_string(grad.size()) + " elements, the tensor has " + std::to_string(t.scores.size()));
        if (t.accumulated)
            detail::fail("fisher_accumulator: tensor '" + t.name +
                         "' was already accumulated in this batch; call end_batch() between batches");
        if (options_.num_batches != 0 && batches_ >= options_.num_batches)
            detail::fail("fisher_accumulator: gradient of tensor '" + t.name + "' comes after all " +
                         std::to_string(options_.num_batches) + " batches (num_batches) have ended");

        const double norm = checked_norm(t, grad, backend);
        const detail::fisher_clip clip = detail::clip_for_norm(options_.max_grad_norm, norm);
        Score* s = t.scores.data();
        const G* g = grad.data();
        const std::size_t size = grad.size();
        const std::size_t blocks = (size + detail::fisher_block - 1) / detail::fisher_block;
        detail::with_fisher_term(clip.clip, options_.num_batches != 0, [&](auto clipped, auto known) {
            const detail::fisher_term<Score, clipped.value, known.value> term{static_cast<Score>(clip.coef),
                                                                              static_cast<Score>(options_.num_batches)};
            backend.parallel_for(blocks, [&](std::size_t b) {
                const std::size_t first = b * detail::fisher_block, last = std::min(size, first + detail::fisher_block);
                for (std::size_t i = first; i < last; ++i) s[i] = s[i] + term(detail::widen<Score>(g[i]));
            });
        });
        t.accumulated = true;
    }

    //! Any contiguous range of a parameter element type (std::vector, std::span,
    //! a mutable tensor_view); forwards to the tensor_view overload.
    template <std::ranges::contiguous_range R, class Backend = default_backend>
        requires std::ranges::sized_range<R> &&
                 parameter_element<std::remove_cvref_t<std::ranges::range_reference_t<R>>>
    void accumulate(std::string_view name, const R& grad, const Backend& backend = {}) {
        using G = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
        accumulate(name, tensor_view<const G>(std::ranges::data(grad), std::ranges::size(grad)), backend);
    }

    //! Closes the current batch. With N known, at most N batches may end.
    void end_batch() {
        if (options_.num_batches != 0 && batches_ >= options_.num_batches)
            detail::fail("fisher_accumulator: end_batch() after all " + std::to_string(options_.num_batches) +
                         " batches (num_batches) have ended");
        ++batches_;
        for (auto& t : tensors_) t.accumulated = false;
    }

    //! Batches ended so far.
    std::size_t batches() const { return batches_; }
    //! Number of tensors registered.
    std::size_t tensor_count() const { return tensors_.size(); }
    //! Registered tensor names, in registration order.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const auto& t : tensors_) out.push_back(t.name);
        return out;
    }

    //! The Fisher scores of tensor `name` (a copy): the accumulator itself when N
    //! is known, the sums divided by batches() otherwise.
    std::vector<Score> scores(std::string_view name) const {
        const entry& t = find(name, "scores");
        std::vector<Score> out(t.scores);
        if (options_.num_batches == 0) {
            if (batches_ == 0) detail::fail("fisher_accumulator: scores of tensor '" + t.name + "' read before any batch ended");
            const Score d = static_cast<Score>(batches_);
            for (auto& v : out) v = v / d;
        }
        return out;
    }

    //! The accumulator of tensor `name` as stored, without a copy: the scores when
    //! N is known, the sums of squared gradients when it is not.
    std::span<const Score> raw_scores(std::string_view name) const { return find(name, "raw_scores").scores; }

    //! The Child-Tuning_D mask: the top p of all registered tensors' scores under
    //! one global cut (select_top_p), one bit mask per tensor in registration
    //! order. Needs at least one ended batch and no batch in progress.
    template <class Backend = default_backend>
    top_p_result select(double p, selection_rule rule = selection_rule::percentile, const Backend& backend = {}) const {
        if (tensors_.empty()) detail::fail("fisher_accumulator: select() without any tensor");
        if (batches_ == 0) detail::fail("fisher_accumulator: select() before any batch ended");
        if (batch_open()) detail::fail("fisher_accumulator: select() in the middle of a batch; call end_batch() first");
        std::vector<std::string_view> names;
        std::vector<std::span<const Score>> spans;
        std::size_t total = 0;
        for (const auto& t : tensors_) {
            names.emplace_back(t.name);
            spans.emplace_back(t.scores);
            total += t.scores.size();
        }
        detail::check_top_p_input(names, p, total);
        detail::check_fisher_batches("fisher_accumulator", options_.num_batches, batches_);
        if (options_.num_batches != 0)
            return detail::select_top_p<Score>(names, spans, p, rule, detail::identity_projection{}, backend);
        const Score d = static_cast<Score>(batches_);
        return detail::select_top_p<Score>(names, spans, p, rule, [d](Score v) { return v / d; }, backend);
    }

    //! The mask under a keep ratio that may differ per tensor (a number, or
    //! keep_ratio::by_tensor of the tensor's name and registration index) and a
    //! per-tensor or global cut (mask/keep_ratio.hpp); same checks as select(p).
    template <class Backend = default_backend>
    mask_set select(const keep_ratio& p, selection_scope scope, selection_rule rule = selection_rule::percentile,
                    const Backend& backend = {}) const {
        if (tensors_.empty()) detail::fail("fisher_accumulator: select() without any tensor");
        if (batches_ == 0) detail::fail("fisher_accumulator: select() before any batch ended");
        if (batch_open()) detail::fail("fisher_accumulator: select() in the middle of a batch; call end_batch() first");
        detail::check_fisher_batches("fisher_accumulator", options_.num_batches, batches_);
        p.validate("fisher_accumulator");
        std::vector<tensor_info> infos;
        std::vector<std::span<const Score>> spans;
        for (const auto& t : tensors_) {
            tensor_info i;
            i.name = t.name;
            i.size = i.elements = t.scores.size();
            infos.push_back(i);
            spans.emplace_back(t.scores);
        }
        const Score d = options_.num_batches != 0 ? Score{1} : static_cast<Score>(batches_);
        return detail::select_by_ratio<Score>("fisher_accumulator", infos, std::span<const std::span<const Score>>(spans), p,
                                              scope, rule, [d](Score v) { return v / d; }, backend);
    }

    //! Zeroes every score and the batch count; tensors stay registered.
    void reset() {
        for (auto& t : tensors_) {
            std::fill(t.scores.begin(), t.scores.end(), Score{0});
            t.accumulated = false;
        }
        batches_ = 0;
    }

private:
    struct entry {
        std::string name;
        std::vector<Score> scores;
        bool accumulated;
    };

    bool batch_open() const {
        return std::any_of(tensors_.begin(), tensors_.end(), [](const entry& t) { return t.accumulated; });
    }

    entry& find(std::string_view name, const char* what) {
        return const_cast<entry&>(std::as_const(*this).find(name, what));
    }
    const entry& find(std::string_view name, const char* what) const {
        const auto it = index_.find(std::string(name));
        if (it == index_.end())
            detail::fail(std::string("fisher_accumulator: ") + what + " of unknown tensor '" + std::string(name) + "'");
        return tensors_[it->second];
    }

    //! ‖grad‖₂ in double from fixed blocks; throws, naming the tensor and the
    //! element, when the gradient holds an infinity or a NaN.
    template <parameter_element G, class Backend>
    double checked_norm(const entry& t, tensor_view<const G> grad, const Backend& backend) const {
        const std::size_t size = grad.size();
        const std::size_t blocks = (size + detail::fisher_block - 1) / detail::fisher_block;
        std::vector<double> partial(blocks);
        backend.parallel_for(blocks, [&](std::size_t b) {
            const std::size_t first = b * detail::fisher_block;
            partial[b] = detail::block_sum_of_squares(grad.data() + first, std::min(detail::fisher_block, size - first));
        });
        double sum = 0;
        for (const double v : partial) sum += v;
        if (std::isfinite(sum)) return std::sqrt(sum);

        // Rare path: locate the non-finite element, or (double gradients only)
        // recompute a norm whose squares overflowed, scaled by the largest magnitude.
        double largest = 0;
        for (std::size_t i = 0; i < size; ++i) {
            const double v = detail::widen<double>(grad[i]);
            if (!std::isfinite(v))
                detail::fail("fisher_accumulator: gradient of tensor '" + t.name + "' is not finite at element " +
                             std::to_string(i));
            largest = std::max(largest, std::abs(v));
        }
        backend.parallel_for(blocks, [&](std::size_t b) {
            const std::size_t first = b * detail::fisher_block;
            partial[b] = detail::block_sum_of_squares<true>(grad.data() + first,
                                                            std::min(detail::fisher_block, size - first), largest);
        });
        double scaled = 0;
        for (const double v : partial) scaled += v;
        return largest * std::sqrt(scaled);
    }

    fisher_options options_;
    std::vector<entry> tensors_;
    std::unordered_map<std::string, std::size_t> index_;
    std::size_t batches_ = 0;
};

} // namespace childtune
