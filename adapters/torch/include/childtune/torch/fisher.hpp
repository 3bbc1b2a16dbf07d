#pragma once
//! \file
//! Child-Tuning_D for LibTorch modules: Fisher scores over a data set, then the
//! global top-p mask (Xu et al. 2021, §2.2).
//!
//! Mirrors the reference loop: the model in training mode; for each batch,
//! backward, then (optionally) clip each selected parameter's gradient norm on its
//! own to `max_grad_norm`, then `score += grad² / N`; finally keep the parameters
//! whose score is at least numpy's percentile (1-p)·100 of all scores (or exactly
//! round(p·N) of them). Only parameters whose names pass `masked_if` take part —
//! the reference uses those containing "layer".

#include <childtune/mask/fisher.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/torch/groups.hpp>
#include <childtune/torch/tensor.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstddef>
#include <concepts>
#include <cstdio>
#include <functional>
#include <iterator>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace childtune::torch {

//! Options of fisher_mask(): how many parameters Child-Tuning_D keeps, how they
//! are selected, which parameters take part and how many batches are averaged.
struct fisher_mask_options {
    double keep = 0.3;                                //!< p_D: the fraction of parameters kept
    selection_rule rule = selection_rule::percentile; //!< numpy percentile (reference) or exact count
    double max_grad_norm = 0.0;                       //!< per-tensor clipping before squaring; 0: off
    name_predicate masked_if = every_name();          //!< which parameters take part
    bool progress = true;                             //!< a progress line on stderr, when stderr is a terminal
    std::size_t num_batches = 0;                      //!< N; 0: the range's size when it has one, else counted
    //! Also when stderr is not a terminal (a batch job's log, a pipe): then one
    //! line at the end instead of a line redrawn per batch. Off by default, so
    //! batch jobs stay quiet unless they ask.
    bool progress_off_terminal = false;
    //! Called after each batch with the batches done and N (0 when unknown), for
    //! a logger of the caller's; independent of `progress`.
    std::function<void(std::size_t batch, std::size_t of)> on_batch = nullptr;
};

//! What fisher_mask() returns: the mask for `set_mask(childtune::fixed{masks})` and
//! what it kept.
struct fisher_result {
    mask_set masks;                    //!< the Child-Tuning_D mask, one entry per selected parameter
    std::vector<mask_summary> summary; //!< kept count and fraction per parameter
    double threshold = 0;              //!< the score cut
    std::size_t kept = 0;              //!< parameters kept in total
    std::size_t batches = 0;           //!< batches accumulated
};

namespace detail {
inline bool stderr_is_terminal() {
#if __has_include(<unistd.h>)
    return ::isatty(2) != 0;
#else
    return false;
#endif
}

//! Anything a range-for can walk: containers, ranges, torch::data data loaders
//! (whose iterators predate the C++20 iterator concepts).
template <class B>
concept iterable_batches = requires(B& b) {
    std::begin(b);
    std::end(b);
};
//! A callable that yields the next batch, or an empty optional at the end.
template <class B>
concept batch_generator = requires(B& b) {
    static_cast<bool>(b());
    *b();
};

template <class Batches, class F>
void for_each_batch(Batches&& batches, F&& f) {
    if constexpr (iterable_batches<Batches>) {
        for (auto&& batch : batches) f(batch);
    } else {
        while (auto batch = batches()) f(*batch);
    }
}
} // namespace detail

//! Accumulates Fisher scores of `model` over `batches` — a range, a torch data
//! loader, or a callable returning std::optional<batch> — passing each batch to
//! `loss_of`, which returns the scalar loss of that batch, and selects the
//! Child-Tuning_D mask. Gradients of the model are zeroed before each batch and
//! after the last; the training mode is restored afterwards.
template <class Batches, class LossOf>
    requires detail::iterable_batches<Batches> || detail::batch_generator<Batches>
fisher_result fisher_mask(::torch::nn::Module& model, Batches&& batches, LossOf&& loss_of,
                          const fisher_mask_options& options = {}) {
    std::size_t n = options.num_batches;
    if constexpr (std::ranges::sized_range<Batches>)
        if (n == 0) n = static_cast<std::size_t>(std::ranges::size(batches));
    fisher_accumulator<float> fisher({.max_grad_norm = options.max_grad_norm, .num_batches = n});

    std::vector<std::pair<std::string, at::Tensor>> selected;
    for (const auto& item : model.named_parameters())
        if (options.masked_if(item.key()) && item.value().requires_grad()) {
            detail::check_parameter(item.value(), "tensor '" + item.key() + "'");
            fisher.add_tensor(item.key(), static_cast<std::size_t>(item.value().numel()));
            selected.emplace_back(item.key(), item.value());
        }
    if (selected.empty())
        childtune::detail::fail("fisher_mask: no parameter of the module passes masked_if (tried on " +
                                detail::some_names(model.named_parameters()) + "; only parameters that require grad count)");

    // A progress line redrawn with '\r' on a terminal; elsewhere one line at the end, if asked.
    const bool interactive = options.progress && detail::stderr_is_terminal();
    const bool summary = options.progress && options.progress_off_terminal && !interactive;
    const bool was_training = model.is_training();
    model.train(true);
    std::size_t seen = 0;
    detail::for_each_batch(batches, [&](auto&& batch) {
        model.zero_grad();
        {
            ::torch::AutoGradMode enable_grad(true);
            at::Tensor loss = loss_of(batch);
            loss.backward();
        }
        ::torch::NoGradGuard no_grad;
        for (auto& [name, param] : selected) {
            const at::Tensor& g = param.grad();
            if (!g.defined()) continue; // no gradient reached it: it contributes zero
            const at::Tensor host = g.detach().to(at::kCPU).contiguous();
            switch (*element_type(host.scalar_type())) {
            case dtype::float32: fisher.accumulate(name, detail::view_of<const float>(host)); break;
            case dtype::float64: fisher.accumulate(name, detail::view_of<const double>(host)); break;
            case dtype::bfloat16: fisher.accumulate(name, detail::view_of<const bfloat16>(host)); break;
            case dtype::float16: fisher.accumulate(name, detail::view_of<const float16>(host)); break;
            }
        }
        fisher.end_batch();
        ++seen;
        if (interactive) {
            if (n != 0) std::fprintf(stderr, "\rFisher information: batch %zu/%zu", seen, n);
            else std::fprintf(stderr, "\rFisher information: batch %zu", seen);
            std::fflush(stderr);
        }
        if (options.on_batch) options.on_batch(seen, n);
    });
    if (interactive) std::fprintf(stderr, "\n");
    if (summary) std::fprintf(stderr, "Fisher information: %zu batches\n", seen);
    model.zero_grad();
    model.train(was_training);

    auto top = fisher.select(options.keep, options.rule);
    fisher_result r;
    r.summary = top.masks.summary();
    r.masks = std::move(top.masks);
    r.threshold = top.threshold;
    r.kept = top.kept;
    r.batches = seen;
    return r;
}

} // namespace childtune::torch
