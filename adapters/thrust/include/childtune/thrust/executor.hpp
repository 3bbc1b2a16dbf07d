#pragma once
//! \file
//! The Thrust executor: tensors in a Thrust system's memory (raw pointers),
//! optimizer state in device vectors, steps as batched launches (step.hpp), one
//! per group and kind of mask view, on the execution policy the caller passes.
//! It moves data and runs kernels; the bookkeeping is the core registry's.
//!
//! Mask views of the built-in kinds run natively on the device (Philox draws,
//! packed words). A fixed mask in host memory (a `childtune::fixed` policy on
//! CUDA) is copied to the device once and kept while its bits stay the same;
//! a view of a policy's own type is turned into packed words on the host and
//! copied every step.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/memory_checks.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/registry/gradient_step.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/state_layout.hpp>
#include <childtune/registry/step_plan.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/device_vector.h>
#include <thrust/logical.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {
namespace detail {

//! Whether a gradient element is NaN or ±Inf (x - x is 0 for every finite x).
template <class P>
struct is_nonfinite {
    CHILDTUNE_HD bool operator()(const P& x) const {
        using W = std::conditional_t<std::is_same_v<P, double>, double, float>;
        const W y = childtune::detail::widen<W>(x);
        return !(y - y == W(0));
    }
};

template <update_rule Rule, parameter_element P>
class executor {
public:
    using state_type = std::conditional_t<std::is_same_v<P, double>, double, float>;
    static constexpr bool supports_compact = false;
    struct allocation {
        std::vector<childtune::detail::state_request> requests;
        std::vector<::thrust::device_vector<state_type>> buffers;
        std::size_t bytes() const {
            std::size_t n = 0;
            for (const auto& b : buffers) n += b.size() * sizeof(state_type);
            return n;
        }
    };

    //! Binds the tensor the registry `r` registered last.
    void bind_new(const childtune::detail::registry<Rule>& r, const std::string& where, P* param, const P* grad,
                  std::uint64_t size) {
        if (size == 0) childtune::detail::fail(where + ": has no element");
        if (!param || !grad) childtune::detail::fail(where + ": null parameter or gradient pointer");
        std::vector<childtune::detail::bound_parameter> others;
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            others.push_back({r.tensors()[i].name, tensors_[i].param, tensors_[i].size * sizeof(P)});
        childtune::detail::check_tensor_memory(where, dtype_of<P>, size, sizeof(P), param, grad, others);
        const auto context = [&] { return where; };
        require_system_memory(param, context, "the parameter");
        require_system_memory(grad, context, "the gradient");
        tensors_.push_back({param, grad, size, {}});
    }
    void pop() noexcept { tensors_.pop_back(); }

    // ---- state ------------------------------------------------------------------------

    template <class Policy>
    allocation allocate(std::vector<childtune::detail::state_request> requests,
                        std::vector<std::vector<std::byte>> from, const Policy& policy) const {
        allocation a{std::move(requests), {}};
        for (std::size_t k = 0; k < a.requests.size(); ++k) {
            if (from.empty()) {
                a.buffers.emplace_back(a.requests[k].elements, state_type(0));
            } else {
                a.buffers.emplace_back(a.requests[k].elements);
                copy_to_system(policy, reinterpret_cast<const state_type*>(from[k].data()), a.requests[k].elements,
                               ::thrust::raw_pointer_cast(a.buffers.back().data()));
            }
        }
        return a;
    }
    void adopt(allocation&& a) noexcept {
        for (std::size_t k = 0; k < a.requests.size(); ++k)
            tensors_[a.requests[k].tensor].state[a.requests[k].buffer].swap(a.buffers[k]);
    }
    void release(std::size_t i, std::size_t from) noexcept {
        for (std::size_t b = from; b < childtune::detail::max_rule_state_buffers; ++b)
            ::thrust::device_vector<state_type>().swap(tensors_[i].state[b]);
    }
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& t : tensors_)
            for (const auto& s : t.state) n += s.size() * sizeof(state_type);
        return n;
    }
    //! State buffer b of tensor i, copied to the host.
    template <class Policy>
    std::vector<std::byte> host_state(std::size_t i, std::size_t b, const Policy& policy) const {
        const auto& s = tensors_[i].state[b];
        std::vector<std::byte> out(s.size() * sizeof(state_type));
        copy_to_host(policy, ::thrust::raw_pointer_cast(s.data()), s.size(), reinterpret_cast<state_type*>(out.data()));
        return out;
    }

    // ---- steps -------------------------------------------------------------------------

    template <class Policy>
    std::optional<std::size_t> first_nonfinite(const childtune::detail::registry<Rule>& r, const Policy& policy) const {
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            if (r.tensors()[i].has_gradient &&
                ::thrust::any_of(policy, tensors_[i].grad, tensors_[i].grad + tensors_[i].size, is_nonfinite<P>{}))
                return i;
        return std::nullopt;
    }

    //! The gradients of `tensors`, copied to the host and widened to float, for
    //! gradient-driven mask policies (registry/gradient_step.hpp). They select on
    //! the host: a policy is a host value whose scores and bits are saved with
    //! it and shared by every executor, so one copy per step (N·sizeof(P)
    //! bytes) replaces a device selection per system and per policy.
    template <class Policy>
    std::vector<std::vector<float>> read_gradients(const childtune::detail::registry<Rule>&,
                                                   std::span<const std::size_t> tensors, const Policy& policy) const {
        std::vector<std::vector<float>> out;
        out.reserve(tensors.size());
        std::vector<P> host;
        for (const auto i : tensors) {
            const auto& t = tensors_[i];
            host.resize(t.size);
            copy_to_host(policy, t.grad, t.size, host.data());
            out.push_back(childtune::detail::widen_gradient(host.data(), dtype_of<P>, t.size));
        }
        return out;
    }

    //! One batched launch per group and kind of mask view.
    template <class Policy>
    void run(const childtune::detail::registry<Rule>& r, const childtune::detail::step_plan<Rule>& plan,
             const Policy& policy) {
        // This step's words of custom views; a deque, whose growth moves no element
        // (the views point into them).
        std::deque<::thrust::device_vector<std::uint64_t>> uploaded;
        used_.clear();
        for (std::size_t g = 0; g < r.group_count(); ++g) {
            std::vector<tensor_step<P, state_type, dense_view>> dense;
            std::vector<tensor_step<P, state_type, bernoulli_view>> keyed;
            std::vector<tensor_step<P, state_type, fixed_view>> words;
            for (const auto& j : plan.jobs) {
                const auto& rec = r.tensors()[j.tensor];
                if (rec.group != g) continue;
                auto& t = tensors_[j.tensor];
                const auto make = [&](auto view) {
                    tensor_step<P, state_type, decltype(view)> s{rec.name, t.param, t.grad, {}, t.size, view,
                                                                  rec.steps + 1, j.fresh};
                    for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b)
                        s.state[b] = t.state[b].empty() ? nullptr : ::thrust::raw_pointer_cast(t.state[b].data());
                    return s;
                };
                const auto& v = j.mask.get();
                if (std::holds_alternative<dense_view>(v)) dense.push_back(make(dense_view{}));
                else if (const auto* b = std::get_if<bernoulli_view>(&v)) keyed.push_back(make(*b));
                else words.push_back(make(device_words(policy, j.mask, t.size, uploaded)));
            }
            const auto& o = r.group(g).options;
            const auto masking = r.options().masking;
            if (!dense.empty()) step<Rule>(policy, o, masking, dense, memory_check::off);
            if (!keyed.empty()) step<Rule>(policy, o, masking, keyed, memory_check::off);
            if (!words.empty()) step<Rule>(policy, o, masking, words, memory_check::off);
        }
        for (auto it = host_masks_.begin(); it != host_masks_.end();) // masks no longer in use
            it = std::find(used_.begin(), used_.end(), it->first) == used_.end() ? host_masks_.erase(it) : std::next(it);
    }

private:
    struct bound_tensor {
        P* param;
        const P* grad;
        std::uint64_t size;
        ::thrust::device_vector<state_type> state[childtune::detail::max_rule_state_buffers];
    };
    struct cached_words {
        std::uint64_t hash = 0;
        ::thrust::device_vector<std::uint64_t> words;
    };

    //! A fixed_view the device can read for a view that is not Bernoulli or dense.
    template <class Policy>
    fixed_view device_words(const Policy& policy, const any_mask_view& v, std::uint64_t n,
                            std::deque<::thrust::device_vector<std::uint64_t>>& uploaded) {
        const std::size_t count = n / 64 + (n % 64 != 0 ? 1 : 0);
        if (const auto* f = std::get_if<fixed_view>(&v.get())) {
            if (is_system_memory(f->words())) return *f;
            // A host fixed mask: copied once, again only when its bits change.
            if (f->offset() % 64 == 0) {
                const std::uint64_t* host = f->words() + f->offset() / 64;
                const std::uint64_t hash = childtune::detail::mask_words_hash(host, n);
                used_.push_back(host);
                auto& c = host_masks_[host];
                if (c.words.size() != count || c.hash != hash) {
                    c.words.resize(count);
                    copy_to_system(policy, host, count, ::thrust::raw_pointer_cast(c.words.data()));
                    c.hash = hash;
                }
                return fixed_view(::thrust::raw_pointer_cast(c.words.data()), n, 0);
            }
        }
        std::vector<std::uint64_t> host(count);
        v.words(0, count, host.data());
        uploaded.emplace_back(count);
        copy_to_system(policy, host.data(), count, ::thrust::raw_pointer_cast(uploaded.back().data()));
        return fixed_view(::thrust::raw_pointer_cast(uploaded.back().data()), n, 0);
    }

    std::vector<bound_tensor> tensors_;
    std::map<const std::uint64_t*, cached_words> host_masks_;
    std::vector<const std::uint64_t*> used_;
};

} // namespace detail
} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
