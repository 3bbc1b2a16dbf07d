#pragma once
//! \file
//! Child-Tuning_D Fisher scores accumulated in a Thrust system's memory, and the
//! top-p mask selected where they are.
//!
//! The same estimate as the core's childtune::fisher_accumulator (mask/fisher.hpp),
//! bit for bit: the per-tensor clipping norm uses the core's fixed blocked order
//! (256 lanes per block of 64 Ki elements, a fixed pairwise tree, blocks added in
//! order on the host), products are never fused into adds (nvcc would otherwise
//! contract them), and the selection is the core's cut (top_p.hpp). So a mask
//! selected on the GPU equals the one the CPU path selects from the same gradients.
//!
//! Each accumulate() reads the gradient twice (the norm, which also rejects a
//! non-finite gradient as the core does, then the update) and waits for the norm's
//! block sums on the host: one synchronisation per tensor and batch.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/order_statistic.hpp>
#include <childtune/thrust/system.hpp>
#include <childtune/thrust/top_p.hpp>

#include <thrust/device_vector.h>
#include <thrust/fill.h>
#include <thrust/find.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

namespace detail {

using childtune::detail::fisher_block;
using childtune::detail::fisher_lanes;

//! Lane `index % fisher_lanes` of block `index / fisher_lanes`: the lane's sum of
//! squares in the core's order (elements j, j + lanes, ... of the block).
template <bool Scaled, parameter_element G>
struct fisher_lane_sum {
    const G* grad;
    std::uint64_t size;
    double scale;
    double* lanes;
    CHILDTUNE_HD void operator()(std::uint64_t index) const {
        const std::uint64_t first = index / fisher_lanes * fisher_block;
        const std::uint64_t last = size - first < fisher_block ? size : first + fisher_block;
        double sum = 0;
        for (std::uint64_t i = first + index % fisher_lanes; i < last; i += fisher_lanes)
            sum = sum + childtune::detail::scaled_square<Scaled>(grad[i], scale);
        lanes[index] = sum;
    }
};

//! Block b's sum: the core's pairwise tree over its lanes.
struct fisher_block_sum {
    double* lanes;
    double* blocks;
    CHILDTUNE_HD void operator()(std::uint64_t b) const {
        blocks[b] = childtune::detail::fisher_lane_tree(lanes + b * fisher_lanes);
    }
};

template <parameter_element G>
struct is_not_finite {
    CHILDTUNE_HD bool operator()(G g) const {
        const double v = childtune::detail::widen<double>(g);
        return !(v - v == 0.0); // inf - inf and NaN - NaN are NaN
    }
};

template <parameter_element G>
struct magnitude {
    CHILDTUNE_HD double operator()(G g) const {
        const double v = childtune::detail::widen<double>(g);
        return v < 0 ? -v : v;
    }
};

template <score_element Score, parameter_element G, bool Clip, bool Known>
struct fisher_update {
    Score* scores;
    const G* grad;
    childtune::detail::fisher_term<Score, Clip, Known> term;
    CHILDTUNE_HD void operator()(std::uint64_t i) const {
        scores[i] = scores[i] + term(childtune::detail::widen<Score>(grad[i]));
    }
};

template <score_element Score>
struct divide_by {
    Score d;
    CHILDTUNE_HD Score operator()(Score v) const { return v / d; }
};

} // namespace detail

//! Accumulates Child-Tuning_D Fisher scores from gradients in the system's memory
//! and selects the fixed mask there. Usage and every check are those of
//! childtune::fisher_accumulator; members that throw leave it unchanged.
template <score_element Score = float>
class fisher_accumulator {
public:
    //! Throws childtune::error for the options childtune::fisher_accumulator rejects.
    explicit fisher_accumulator(fisher_options options = {}) : options_(options) {
        // The core's constructor holds the checks of the options.
        (void)childtune::fisher_accumulator<Score>(options);
    }

    //! The options given at construction.
    const fisher_options& options() const { return options_; }

    //! Registers tensor `name` of `size` elements with zero scores; the
    //! registration order is the order of select()'s masks.
    void add_tensor(std::string name, std::uint64_t size) {
        if (name.empty()) fail("a tensor name must not be empty");
        if (size == 0) fail("tensor '" + name + "' has no element");
        if (index_.contains(name)) fail("tensor '" + name + "' added twice");
        if (batch_open()) fail("tensor '" + name + "' added in the middle of a batch");
        const std::uint64_t offset = scores_.size();
        // All tensors share one score array: offset + size must neither wrap
        // (which shrank the array, dropping other tensors' scores) nor exceed the
        // address space.
        if (size > childtune::detail::max_tensor_elements<Score> - offset)
            fail("tensor '" + name + "' has " + std::to_string(size) + " elements; with the " + std::to_string(offset) +
                 " already registered that is more than the address space holds");
        scores_.resize(offset + size, Score{0});
        index_.emplace(name, tensors_.size());
        tensors_.push_back({std::move(name), offset, size, false});
    }

    //! Adds this batch's gradient of tensor `name` (`size` elements at `grad`, in
    //! the system's memory): clipped to max_grad_norm (if set) on its own, squared,
    //! divided by N when N is known. Throws, naming the tensor, for an unknown
    //! name, a size mismatch, a null or (unless `check` is off) non-device
    //! pointer, a non-finite gradient, a second gradient of the tensor in the same
    //! batch, or a batch past N.
    template <parameter_element G, class Policy>
    void accumulate(const Policy& policy, std::string_view name, const G* grad, std::uint64_t size,
                    memory_check check = memory_check::on) {
        detail::require_device_policy<Policy>();
        entry& t = find(name, "accumulate");
        if (size != t.size)
            fail("gradient of tensor '" + t.name + "' has " + std::to_string(size) + " elements, the tensor has " +
                 std::to_string(t.size));
        if (t.accumulated)
            fail("tensor '" + t.name + "' was already accumulated in this batch; call end_batch() between batches");
        if (options_.num_batches != 0 && batches_ >= options_.num_batches)
            fail("gradient of tensor '" + t.name + "' comes after all " + std::to_string(options_.num_batches) +
                 " batches (num_batches) have ended");
        if (!grad) fail("gradient of tensor '" + t.name + "' is a null pointer");
        if (check == memory_check::on)
            detail::require_system_memory(grad, [&] { return "fisher_accumulator: tensor '" + t.name + "'"; },
                                          "the gradient");

        const double norm = checked_norm(policy, t, grad);
        const childtune::detail::fisher_clip clip = childtune::detail::clip_for_norm(options_.max_grad_norm, norm);
        Score* scores = ::thrust::raw_pointer_cast(scores_.data()) + t.offset;
        childtune::detail::with_fisher_term(clip.clip, options_.num_batches != 0, [&](auto clipped, auto known) {
            const detail::fisher_update<Score, G, clipped.value, known.value> update{
                scores, grad, {static_cast<Score>(clip.coef), static_cast<Score>(options_.num_batches)}};
            ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                               ::thrust::counting_iterator<std::uint64_t>(t.size), update);
        });
        t.accumulated = true;
    }

    //! Closes the current batch. With N known, at most N batches may end.
    void end_batch() {
        if (options_.num_batches != 0 && batches_ >= options_.num_batches)
            fail("end_batch() after all " + std::to_string(options_.num_batches) + " batches (num_batches) have ended");
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
        for (const auto& t : tensors_) out.push_back(t.name);
        return out;
    }

    //! The Fisher scores of tensor `name`, copied to the host: the accumulator
    //! itself when N is known, the sums divided by batches() otherwise.
    template <class Policy>
    std::vector<Score> scores(const Policy& policy, std::string_view name) const {
        detail::require_device_policy<Policy>();
        const entry& t = find(name, "scores");
        if (options_.num_batches == 0 && batches_ == 0)
            fail("scores of tensor '" + t.name + "' read before any batch ended");
        std::vector<Score> out(t.size);
        detail::copy_to_host(policy, raw_scores(name), t.size, out.data());
        if (options_.num_batches == 0) {
            const Score d = static_cast<Score>(batches_);
            for (auto& v : out) v = v / d;
        }
        return out;
    }

    //! The accumulator of tensor `name` in the system's memory, as stored.
    const Score* raw_scores(std::string_view name) const {
        return ::thrust::raw_pointer_cast(scores_.data()) + find(name, "raw_scores").offset;
    }

    //! The Child-Tuning_D mask: the top p of all registered tensors' scores under
    //! one global cut, in the system's memory, one mask per tensor in registration
    //! order; equal to childtune::fisher_accumulator::select on the same gradients.
    template <class Policy>
    device_top_p_result select(const Policy& policy, double p, selection_rule rule = selection_rule::percentile) const {
        detail::require_device_policy<Policy>();
        if (tensors_.empty()) fail("select() without any tensor");
        if (batches_ == 0) fail("select() before any batch ended");
        if (batch_open()) fail("select() in the middle of a batch; call end_batch() first");
        std::vector<device_scores<Score>> tensors;
        std::vector<std::string_view> names;
        for (const auto& t : tensors_) {
            tensors.push_back({t.name, ::thrust::raw_pointer_cast(scores_.data()) + t.offset, t.size});
            names.emplace_back(t.name);
        }
        childtune::detail::check_top_p_input(names, p, scores_.size());
        childtune::detail::check_fisher_batches("fisher_accumulator", options_.num_batches, batches_);
        const std::span<const device_scores<Score>> all(tensors);
        if (options_.num_batches != 0)
            return detail::select_top_p<Score>(policy, all, p, rule, detail::identity_projection{});
        return detail::select_top_p<Score>(policy, all, p, rule, detail::divide_by<Score>{static_cast<Score>(batches_)});
    }

    //! Zeroes every score and the batch count; tensors stay registered.
    void reset() {
        ::thrust::fill(scores_.begin(), scores_.end(), Score{0});
        for (auto& t : tensors_) t.accumulated = false;
        batches_ = 0;
    }

private:
    struct entry {
        std::string name;
        std::uint64_t offset;
        std::uint64_t size;
        bool accumulated;
    };

    [[noreturn]] static void fail(const std::string& problem) {
        childtune::detail::fail("fisher_accumulator: " + problem);
    }

    bool batch_open() const {
        return std::any_of(tensors_.begin(), tensors_.end(), [](const entry& t) { return t.accumulated; });
    }
    entry& find(std::string_view name, const char* what) {
        return const_cast<entry&>(std::as_const(*this).find(name, what));
    }
    const entry& find(std::string_view name, const char* what) const {
        const auto it = index_.find(std::string(name));
        if (it == index_.end()) fail(std::string(what) + " of unknown tensor '" + std::string(name) + "'");
        return tensors_[it->second];
    }

    //! Σ over blocks, in block order on the host, of the blocks' lane trees.
    template <bool Scaled, parameter_element G, class Policy>
    static double sum_of_squares(const Policy& policy, const G* grad, std::uint64_t size, double scale) {
        using detail::fisher_block;
        using detail::fisher_lanes;
        const std::uint64_t blocks = (size + fisher_block - 1) / fisher_block;
        const detail::scratch<double, Policy> lanes(policy, blocks * fisher_lanes, "the Fisher norm's lane sums");
        const detail::scratch<double, Policy> sums(policy, blocks, "the Fisher norm's block sums");
        ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                           ::thrust::counting_iterator<std::uint64_t>(blocks * fisher_lanes),
                           detail::fisher_lane_sum<Scaled, G>{grad, size, scale, lanes.get()});
        ::thrust::for_each(policy, ::thrust::counting_iterator<std::uint64_t>(0),
                           ::thrust::counting_iterator<std::uint64_t>(blocks),
                           detail::fisher_block_sum{lanes.get(), sums.get()});
        std::vector<double> partial(blocks);
        detail::copy_to_host(policy, sums.get(), blocks, partial.data());
        double sum = 0;
        for (const double v : partial) sum += v;
        return sum;
    }

    //! ‖grad‖₂ as the core computes it; throws, naming the tensor and the first
    //! non-finite element, when the gradient holds an infinity or a NaN.
    template <parameter_element G, class Policy>
    static double checked_norm(const Policy& policy, const entry& t, const G* grad) {
        const double sum = sum_of_squares<false>(policy, grad, t.size, 1.0);
        if (std::isfinite(sum)) return std::sqrt(sum);
        const G* bad = ::thrust::find_if(policy, grad, grad + t.size, detail::is_not_finite<G>{});
        if (bad != grad + t.size)
            fail("gradient of tensor '" + t.name + "' is not finite at element " + std::to_string(bad - grad));
        // Finite double gradients whose squares overflowed: scale by the largest magnitude.
        const double largest = ::thrust::transform_reduce(policy, grad, grad + t.size, detail::magnitude<G>{}, 0.0,
                                                          ::thrust::maximum<double>());
        return largest * std::sqrt(sum_of_squares<true>(policy, grad, t.size, largest));
    }

    fisher_options options_;
    std::vector<entry> tensors_;
    std::unordered_map<std::string, std::size_t> index_;
    ::thrust::device_vector<Score> scores_;
    std::size_t batches_ = 0;
};

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
