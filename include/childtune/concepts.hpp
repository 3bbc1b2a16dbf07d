#pragma once
//! \file
//! Every public concept of childtune, in one place. Each states, in its comment,
//! the semantic requirements a model must meet beyond the syntax checked here.

#include <childtune/numeric/half.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <string_view>
#include <type_traits>

namespace childtune {

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

//! The keep decisions of one tensor at one step. Semantics: `keep(i)` and bit j of
//! `bits64(first)` (for i = first + j) are the same pure function of i; a view
//! is a cheap value that may be copied into threads and kernels;
//! `keep_probability()` is the probability p a kept gradient is divided by (1 for
//! masks that do not rescale); `is_dense` is true only if every element is kept.
template <class V>
concept gradient_mask_view = std::copyable<V> && requires(const V v, std::uint64_t i) {
    { v.keep(i) } -> std::same_as<bool>;
    { v.bits64(i) } -> std::same_as<std::uint64_t>;
    { v.keep_probability() } -> std::convertible_to<double>;
    { V::is_dense } -> std::convertible_to<bool>;
};

//! A gradient-mask policy: hyperparameters only (paper: Child-Tuning_F's p, a
//! fixed mask's bits), validated by `validate()` (throws childtune::error), and a
//! way to obtain the view of one tensor at one step — by stable key and step for
//! keyed masks (`view(key, step, offset)`), by name and size for stored masks
//! (`view(name, size, offset)`). Semantics: a view depends on nothing else, so
//! masks are identical across threads, shards and devices.
template <class M>
concept gradient_mask = std::copyable<M> && requires(const M m) { m.validate(); } &&
                        (requires(const M m, std::uint32_t key, std::uint64_t step, std::uint64_t offset) {
                            { m.view(key, step, offset) } -> gradient_mask_view;
                        } || requires(const M m, std::string_view name, std::uint64_t size, std::uint64_t offset) {
                            { m.view(name, size, offset) } -> gradient_mask_view;
                        });

//! An element-wise update rule (AdamW, Adam, SGD...). Syntax: `options` holds the
//! per-group hyperparameters and round-trips through `to_values`/`from_values`
//! (the state-file format); `validate(options, group)` throws childtune::error
//! naming the group; `state_buffers(options)` <= `max_state_buffers` (at most 2)
//! per-element state arrays; `prepare<S>(options, step, fresh_state)` computes the
//! per-step scalars; `apply` updates one element or one vector of lanes.
//! Semantics: `apply` is a pure function of its arguments made of IEEE operations
//! the scalar and vector forms evaluate identically, so every backend and thread
//! split gives the same bits; state buffers start at zero. A rule whose `apply` is
//! marked CHILDTUNE_HD_INLINE declares `static constexpr bool inline_apply = true`
//! and gets the AVX2 kernel; others run the SSE2 kernel (see exec/cpu_step.hpp).
template <class R>
concept update_rule =
    std::default_initializable<typename R::options> && std::equality_comparable<typename R::options> &&
    requires(const typename R::options& o, std::string_view group, std::uint64_t step, bool fresh) {
        { R::name } -> std::convertible_to<std::string_view>;
        requires R::max_state_buffers <= 2;
        R::validate(o, group);
        { R::state_buffers(o) } -> std::convertible_to<std::size_t>;
        { R::to_values(o) } -> std::same_as<std::array<double, R::option_count>>;
        { R::from_values(R::to_values(o)) } -> std::same_as<typename R::options>;
        { R::template prepare<float>(o, step, fresh) } -> std::same_as<typename R::template step_constants<float>>;
        { R::template prepare<double>(o, step, fresh) } -> std::same_as<typename R::template step_constants<double>>;
    } &&
    requires(const typename R::template step_constants<float>& c, const element_mask<bool, float>& e, float& p,
             float (&s)[2]) { R::apply(c, e, p, 0.0f, s); };

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

} // namespace childtune
