#pragma once
//! \file
//! Every public concept of childtune, in one place (the LibTorch adapter's two
//! batch concepts, which need LibTorch, are named at the end). Each states, in
//! its comment, the semantic requirements a model must meet beyond the syntax
//! checked here; tests/concepts.cpp checks the library's own models.

#include <childtune/mask/gradient_reader.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string_view>
#include <type_traits>

namespace childtune {

// ---- element types and tensors ----------------------------------------------------------

//! Element types a parameter (and its gradient) may be stored in.
template <class T>
concept parameter_element = std::same_as<T, float> || std::same_as<T, double> ||
                            std::same_as<T, bfloat16> || std::same_as<T, float16>;

//! Element types optimizer state (moments, momentum buffers) may be kept in.
template <class T>
concept state_element = std::same_as<T, float> || std::same_as<T, double>;

//! A contiguous rank-1 tensor: `data()` points at `size()` adjacent elements of a
//! parameter element type (std::vector, std::array, std::span, tensor_view).
//! Semantics: the memory stays valid and is not reallocated while an optimizer
//! holds a view of it. Shaped objects (Eigen, LibTorch) reach the core through
//! their adapters, which check contiguity.
template <class R>
concept contiguous_tensor = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                            parameter_element<std::remove_cv_t<std::ranges::range_value_t<R>>>;

// ---- masks --------------------------------------------------------------------------------

//! The keep decisions of one tensor at one step. Semantics: `keep(i)` and bit j of
//! `bits64(first)` (for i = first + j) are the same pure function of i, with i
//! counted from the registered view's first element; a view is a cheap value
//! that may be copied into threads and kernels; `keep_probability()` is the
//! probability p kept gradients are divided by (1 for masks that do not
//! rescale); `is_dense` is true only if every element is kept.
template <class V>
concept mask_view = requires(const V v, std::uint64_t i) {
    { v.keep(i) } -> std::same_as<bool>;
    { v.bits64(i) } -> std::same_as<std::uint64_t>;
    { v.keep_probability() } -> std::convertible_to<double>;
    { V::is_dense } -> std::convertible_to<bool>;
} && std::copyable<V>; // copyable last: a type converting from views is not checked against itself
//! The name of mask_view before 0.2.
template <class V>
concept gradient_mask_view = mask_view<V>;

//! A mask policy: which elements of a tensor a step keeps (the child network).
//! Syntax: `validate()` throws childtune::error for bad hyperparameters;
//! `view(t, step)` gives the keep decisions of tensor `t` (mask/tensor_info.hpp)
//! at `step` (the optimizer's count of applied steps, from 0).
//!
//! Semantics, the library's promise that every model keeps:
//! - a keep decision is a pure function of what the policy holds and of (step,
//!   tensor identity, element index in the logical tensor): never of threads,
//!   shards, ranks, devices or call order, so masks agree everywhere;
//! - `keep_probability()` of the view is what kept gradients are divided by
//!   (Child-Tuning_F's 1/p rescaling), 1 for masks that do not rescale;
//! - a policy holds hyperparameters (and data such as fixed bits), not tensors.
//!
//! Optional members, found at compile time:
//! - `check_tensors(users, registered)`: spans of tensor_info of the tensors
//!   that use the policy and of all registered tensors; throws when the policy
//!   cannot serve them (a fixed mask built for another parameter set);
//! - `static constexpr std::string_view policy_name`, `save(policy_writer&)
//!   const` and `static M load(policy_reader&)` (io/policy_io.hpp): the policy
//!   is written into optimizer state files and restored on load;
//! - `operator==`: lets the optimizer see that a mask did not change;
//! - `M observe(const gradient_reader& g, std::uint64_t step) const`
//!   (gradient_reading_policy): the policy's next value, chosen from this
//!   step's gradients. See below.
//!
//! `observe`, for masks chosen from the gradients they mask (magnitude masks,
//! refreshed Fisher masks). At every step, after the NaN/Inf scan and before
//! any view of the step is taken, the optimizer calls `observe` once per policy
//! in use, with the gradients of the tensors that use it and have one at this
//! step (not at all when none has one) (mask/gradient_reader.hpp: whole logical tensors widened to float, in
//! registration order, the same on every rank). The returned policy serves the
//! views of `step` and of later steps; it replaces this one when, and only when,
//! the step is applied: a step that is rejected or skipped (NaN/Inf, a failed
//! allocation) changes nothing. The promise: the result is a pure function of
//! (*this, the values shown, step), so every executor, thread count and rank
//! computes the same next policy. Data it accumulates (scores of a window) is
//! policy data, saved with save() when the policy is saveable. Policies with
//! `observe` never get compact Child-Tuning_D state (their masks change).
//!
//! Views may be of the built-in types (dense_view, bernoulli_view, fixed_view),
//! which every executor runs natively (on GPUs too), or of the policy's own
//! mask_view type, which CPU executors run through function pointers and device
//! executors through keep words computed on the host.
template <class M>
concept mask_policy = requires(const M m, const tensor_info& t, std::uint64_t step) {
    m.validate();
    { m.view(t, step) } -> mask_view;
} && std::copyable<M>; // copyable last: a type converting from policies is not checked against itself

//! A mask_policy whose next value is chosen from each step's gradients (see
//! `observe` in mask_policy's comment for the semantic promise).
template <class M>
concept gradient_reading_policy = mask_policy<M> && requires(const M m, const gradient_reader& g, std::uint64_t step) {
    { m.observe(g, step) } -> std::same_as<M>;
};

//! The policy concept before 0.2 (views by key or by name); the built-in
//! policies model both.
template <class M>
concept gradient_mask = std::copyable<M> && requires(const M m) { m.validate(); } &&
                        (requires(const M m, std::uint32_t key, std::uint64_t step, std::uint64_t offset) {
                            { m.view(key, step, offset) } -> mask_view;
                        } || requires(const M m, std::string_view name, std::uint64_t size, std::uint64_t offset) {
                            { m.view(name, size, offset) } -> mask_view;
                        });

// ---- update rules ---------------------------------------------------------------------------

namespace detail {
template <class R>
concept rule_with_phase = requires(const typename R::template step_constants<float>& c,
                                   typename R::template step_constants<float>& cm,
                                   const element_mask<bool, float>& e, float p,
                                   float (&s)[rule_state_slots<R>()], float (&terms)[R::reduction_count],
                                   const std::array<double, R::reduction_count>& sums) {
    R::reduce(c, e, p, 0.0f, s, terms);
    R::finish(cm, sums);
};
} // namespace detail

//! An update rule (AdamW, Adam, SGD, Lion, LAMB...): what one optimizer step does
//! to one element, and optionally once per tensor.
//!
//! Syntax: `options` holds the per-group hyperparameters and round-trips through
//! `to_values`/`from_values` (the state-file format); `validate(options, group)`
//! throws childtune::error naming the group; `state_buffers(options)` <=
//! `max_state_buffers` (at most 4) per-element state arrays, zero-initialised;
//! `prepare<S>(options, step, fresh_state)` computes the per-step scalars
//! (`step` counts this tensor's steps including this one); `apply(c, e, p, g,
//! state)` updates one element or one vector of lanes. Rules with up to two
//! buffers take `V (&state)[2]`, others `V (&state)[max_state_buffers]`. Take
//! `p` and `g` by (const) reference: vector lanes by value make GCC print a
//! -Wpsabi note in every build without AVX (see update/masking.hpp).
//!
//! A per-tensor phase (`reduction_count` > 0): before any parameter changes,
//! `reduce(c, e, p, g, state, terms)` runs on every element (it may update the
//! state; `terms` are summed over the tensor in the canonical order of
//! exec/tensor_sum.hpp, in double), then `finish(c, sums)` completes the
//! tensor's constants, then `apply` runs on every element. LAMB's trust ratio
//! is such a phase.
//!
//! Semantics: `apply` and `reduce` are pure functions of their arguments made of
//! IEEE operations (+ - * / sqrt, comparisons, select) that the scalar, vector
//! and ATen forms evaluate identically, so every executor and thread split gives
//! the same bits. They are templates over the value type V and lane-mask type K
//! (numeric/lanes.hpp: float/double and bool; exec/detail/simd.hpp: vectors;
//! the LibTorch adapter: tensors). See update/rule_traits.hpp for the optional
//! members (`min_state_buffers`, `inline_apply`, `compact_state_exact`).
template <class R>
concept update_rule =
    std::default_initializable<typename R::options> && std::equality_comparable<typename R::options> &&
    requires(const typename R::options& o, std::string_view group, std::uint64_t step, bool fresh) {
        { R::name } -> std::convertible_to<std::string_view>;
        requires R::max_state_buffers <= detail::max_rule_state_buffers;
        R::validate(o, group);
        { R::state_buffers(o) } -> std::convertible_to<std::size_t>;
        { R::to_values(o) } -> std::same_as<std::array<double, R::option_count>>;
        { R::from_values(R::to_values(o)) } -> std::same_as<typename R::options>;
        { R::template prepare<float>(o, step, fresh) } -> std::same_as<typename R::template step_constants<float>>;
        { R::template prepare<double>(o, step, fresh) } -> std::same_as<typename R::template step_constants<double>>;
    } &&
    requires(const typename R::template step_constants<float>& c, const element_mask<bool, float>& e, float& p,
             float (&s)[detail::rule_state_slots<R>()]) { R::apply(c, e, p, 0.0f, s); } &&
    (detail::rule_reduction_count<R>() == 0 || detail::rule_with_phase<R>);

// ---- execution --------------------------------------------------------------------------------

namespace detail {
struct index_sink {
    void operator()(std::size_t) const {}
};
} // namespace detail

//! Runs a loop of independent work items. Semantics: `parallel_for(n, f)` calls
//! f(i) exactly once for every i in [0, n), possibly concurrently, and returns
//! after all calls finished; f must not throw. `concurrency()` is the number of
//! threads it may use. Results never depend on the backend (see exec/backend.hpp).
template <class E>
concept execution_backend = requires(const E& e, std::size_t n) {
    e.parallel_for(n, detail::index_sink{});
    { e.concurrency() } -> std::convertible_to<std::size_t>;
};

// ---- distributed ------------------------------------------------------------------------------

//! A process group of `size()` ranks, this process being `rank()`.
//! Semantics: every member is collective — all ranks call it in the same order
//! with matching arguments — and blocks until its result is complete here.
//! - `all_reduce_sum(x)` replaces x on every rank by the element-wise sum over
//!   ranks. Floating-point sums may be added in any order (results need not be
//!   bit-identical across ranks); childtune uses them for exact integer counts.
//! - `all_gather(mine, all, counts)`: `counts[r]` bytes from rank r (`mine` has
//!   counts[rank()] of them) land in `all` one after another in rank order.
//! - `broadcast(bytes, root)`: rank `root`'s bytes overwrite the others'.
//! A failure of the engine throws childtune::error naming the operation.
template <class C>
concept communicator = requires(const C& c, std::span<float> f, std::span<double> d, std::span<std::uint64_t> u,
                                std::span<const std::byte> mine, std::span<std::byte> all,
                                std::span<const std::size_t> counts, std::size_t root) {
    { c.rank() } -> std::convertible_to<std::size_t>;
    { c.size() } -> std::convertible_to<std::size_t>;
    c.all_reduce_sum(f);
    c.all_reduce_sum(d);
    c.all_reduce_sum(u);
    c.all_gather(mine, all, counts);
    c.broadcast(all, root);
};

// ---- Fisher scores and selection ------------------------------------------------------------

//! Types Fisher scores and selection inputs may have.
template <class T>
concept score_element = std::same_as<T, float> || std::same_as<T, double>;

template <score_element S>
struct named_scores;

namespace detail {
template <class T>
struct score_span_traits : std::false_type {};
template <score_element S>
struct score_span_traits<std::span<const S>> : std::true_type {
    using score = S;
};
template <class T>
struct named_scores_traits : std::false_type {};
template <score_element S>
struct named_scores_traits<named_scores<S>> : std::true_type {
    using score = S;
};
} // namespace detail

//! A contiguous sequence of `std::span<const float>` (or `<const double>`): the
//! segments an order statistic runs over, as if they were concatenated.
template <class R>
concept score_segment_range = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                              detail::score_span_traits<std::ranges::range_value_t<R>>::value;

//! A contiguous sequence of `named_scores<float>` (or `<double>`) (select/top_p.hpp).
template <class R>
concept named_score_range = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                            detail::named_scores_traits<std::ranges::range_value_t<R>>::value;

// ---- named elsewhere ----------------------------------------------------------------------------
//
// The LibTorch adapter's Fisher helper (torch/fisher.hpp) takes its batches as a
// childtune::torch::iterable_batches (a range or a torch data loader) or a
// childtune::torch::batch_generator (a callable returning std::optional of a
// batch); they need LibTorch's headers, so they live there.

} // namespace childtune
