#pragma once
//! \file
//! A Child-Tuning optimizer for parameters in a Thrust system's memory: the core
//! basic_optimizer (groups, mask policies, step counts, state file) on the
//! Thrust executor (executor.hpp: state in device memory, batched launches).
//!
//! Step for step it computes what childtune::optimizer computes on the host (the
//! same keep decisions, the same per-tensor step counts and bias corrections), and
//! its state file is the core's, so a checkpoint written on a GPU resumes on the
//! CPU and back. What it leaves out: absent gradients and rebinding (device
//! gradients are registered once and always present) and compact Child-Tuning_D
//! state. Built from masking options alone, steps do not scan gradients for
//! NaN/Inf (nonfinite_policy::unchecked, as before 0.2); pass optimizer_options
//! to have them scanned. State is float for float, bfloat16 and float16
//! parameters, double for double.
//!
//! Every member that throws childtune::error leaves the optimizer as it was.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/optimizer/basic_optimizer.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/thrust/executor.hpp>
#include <childtune/thrust/mask_set.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/device_vector.h>

#include <cstdint>
#include <cstring>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! The built-in masks of this optimizer before 0.2: dense, Bernoulli, or a fixed
//! mask whose words are in device memory. Any mask_policy may be set instead.
using device_mask_mode = std::variant<dense, bernoulli, device_mask_set>;

//! Child-Tuning over parameters of element type P in a Thrust system's memory:
//! groups, masks and state file as childtune::optimizer, state in device memory,
//! every tensor stepped in batched launches on the caller's execution policy.
template <update_rule Rule, parameter_element P = float>
class optimizer : public basic_optimizer<Rule, detail::executor<Rule, P>> {
    using base = basic_optimizer<Rule, detail::executor<Rule, P>>;

public:
    using typename base::options_type;
    //! Element type of the optimizer state (double for double parameters, else float).
    using state_type = typename detail::executor<Rule, P>::state_type;

    //! Steps without a NaN/Inf scan (as before 0.2).
    explicit optimizer(masking_options masking = {})
        : base(dense{}, {masking, nonfinite_policy::unchecked, state_precision::automatic, false, false}) {}
    //! Options of the core optimizer (the NaN/Inf policy included); the state
    //! precision follows P.
    explicit optimizer(optimizer_options options) : base(dense{}, checked(options)) {}

    // ---- parameters --------------------------------------------------------------

    //! Registers `size` elements at `param` and their gradient at `grad`, both in
    //! the memory of `policy`'s system (checked once, here). `key` overrides the
    //! Bernoulli tensor key derived from the name.
    template <class Policy>
    void add_parameter(const Policy& policy, std::size_t group, std::string name, P* param, const P* grad,
                       std::uint64_t size, std::optional<std::uint32_t> key = std::nullopt) {
        detail::require_device_policy<Policy>();
        (void)policy;
        auto& r = this->registry_;
        const std::uint32_t k = r.check_new_tensor(group, name, dtype_of<P>, size, size, 0, key);
        const std::string where = r.describe(group, name);
        r.add_tensor(group, std::move(name), k, dtype_of<P>, size, size, 0, true);
        try {
            this->executor_.bind_new(r, where, param, grad, size);
        } catch (...) {
            r.pop_tensor();
            throw;
        }
    }
    //! The same for `thrust::device_vector`s of equal size.
    template <class Policy, class AP, class AG>
    void add_parameter(const Policy& policy, std::size_t group, std::string name, ::thrust::device_vector<P, AP>& param,
                       const ::thrust::device_vector<P, AG>& grad, std::optional<std::uint32_t> key = std::nullopt) {
        if (param.size() != grad.size())
            childtune::detail::fail("tensor '" + name + "': gradient has " + std::to_string(grad.size()) +
                                    " elements, parameter has " + std::to_string(param.size()));
        add_parameter(policy, group, std::move(name), ::thrust::raw_pointer_cast(param.data()),
                      ::thrust::raw_pointer_cast(grad.data()), param.size(), key);
    }

    // ---- mask ---------------------------------------------------------------------

    using base::set_mask;
    //! The masks of 0.1: dense, Bernoulli, or a device_mask_set (e.g. from the
    //! device Fisher selection), which must cover every tensor of a masked group.
    void set_mask(device_mask_mode mode) {
        if (auto* d = std::get_if<device_mask_set>(&mode)) base::set_mask(std::move(*d));
        else if (const auto* b = std::get_if<bernoulli>(&mode)) base::set_mask(*b);
        else base::set_mask(dense{});
    }
    //! The optimizer-wide mask as a device_mask_mode (a copy; a device_mask_set
    //! is copied in device memory). Prefer mask_policy().
    device_mask_mode mask() const {
        const any_mask& m = this->mask_policy();
        if (const auto* d = m.target<device_mask_set>()) return *d;
        if (const auto* b = m.target<bernoulli>()) return *b;
        if (m.target<dense>()) return dense{};
        childtune::detail::fail("mask(): the optimizer-wide mask is not a device_mask_mode; use mask_policy()");
    }

    // ---- stepping ---------------------------------------------------------------------

    //! One step over every registered tensor: one fused launch per group and kind
    //! of mask on `policy`.
    template <class Policy>
    step_result step(const Policy& policy) {
        detail::require_device_policy<Policy>();
        return this->step_with(policy);
    }

    //! A copy on the host of state buffer `buffer` of tensor `name` (empty before
    //! its first step).
    template <class Policy>
    std::vector<state_type> state(const Policy& policy, std::string_view name, std::size_t buffer) const {
        const std::size_t i = this->registry_.tensor_index(name);
        if (buffer >= Rule::max_state_buffers)
            childtune::detail::fail("tensor '" + std::string(name) + "': state buffer " + std::to_string(buffer) + " does not exist");
        const auto bytes = this->executor_.host_state(i, buffer, policy);
        std::vector<state_type> out(bytes.size() / sizeof(state_type));
        std::memcpy(out.data(), bytes.data(), bytes.size());
        return out;
    }

    // ---- state file: the core optimizer's format ------------------------------------------

    //! Device masks are written as the host masks they hold.
    template <class Policy>
    void save(const Policy& policy, std::ostream& out) const {
        detail::require_device_policy<Policy>();
        auto masks = childtune::detail::masks_of(this->registry_);
        const auto to_host = [&](any_mask& m) {
            if (const auto* d = m.template target<device_mask_set>()) m = fixed{d->download(policy)};
        };
        to_host(masks.default_mask);
        for (auto& own : masks.own)
            if (own) to_host(*own);
        this->save_with(out, masks, [&](std::size_t i, std::size_t b) { return this->executor_.host_state(i, b, policy); });
    }
    //! Restores a state file of the same parameter set (written by this class or
    //! by childtune::optimizer with the same groups, tensors, types and state
    //! precision, without compact state); fixed masks go to device memory.
    //! Throws childtune::error on a truncated, corrupt, foreign or mismatched
    //! file and then changes nothing. `options` as childtune::optimizer::load's
    //! (by default the file's hyperparameters replace those set since).
    template <class Policy>
    void load(const Policy& policy, std::istream& in, const load_options& options = {}) {
        detail::require_device_policy<Policy>();
        this->load_with(
            in, options,
            [&](auto& staged) {
                auto& next = staged.next;
                const auto to_device = [&](const any_mask& m) -> std::optional<any_mask> {
                    if (const auto* f = m.target<fixed>()) return any_mask(device_mask_set::upload(policy, f->masks));
                    return std::nullopt;
                };
                auto own = this->own_masks_of(next);
                auto wide = to_device(next.default_mask());
                for (auto& o : own)
                    if (o)
                        if (auto d = to_device(*o)) o = std::move(d);
                next.set_masks(wide ? *wide : next.default_mask(), std::move(own));
            },
            policy);
    }

private:
    static optimizer_options checked(optimizer_options o) {
        if (o.precision != state_precision::automatic)
            childtune::detail::fail("optimizer options: the Thrust optimizer keeps state in the precision of P");
        return o;
    }
    static std::vector<std::optional<any_mask>> own_masks_of(const childtune::detail::registry<Rule>& r) {
        std::vector<std::optional<any_mask>> own;
        for (const auto& g : r.groups()) own.push_back(g.own);
        return own;
    }
};

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
