#pragma once
//! \file
//! The Child-Tuning optimizer for tensors in host memory: basic_optimizer
//! (groups, mask policies, steps, state file) on the CPU executor (the fused
//! SIMD pass, OpenMP). This header adds how host tensors are registered.
//!
//! A tensor may also be registered as a slice of a larger logical tensor
//! (add_parameter_slice): the step is element-wise and every mask decision is a
//! function of the element's index in the logical tensor, so an optimizer per
//! slice updates each element exactly as one optimizer over the whole tensor.
//! This is how the sharded optimizer (distributed/sharded_optimizer.hpp) steps
//! one rank's slice.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_executor.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/optimizer/basic_optimizer.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <optional>
#include <ostream>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace childtune {

//! The Child-Tuning optimizer over host memory (std::vector, std::span, arrays,
//! Eigen through childtune/eigen.hpp): registers parameter/gradient buffers by
//! name in groups and steps them with the fused CPU kernels. `Rule` is adamw,
//! adam, sgd, lion, lamb or any update_rule.
template <update_rule Rule>
class optimizer : public basic_optimizer<Rule, detail::cpu_executor<Rule>> {
    using base = basic_optimizer<Rule, detail::cpu_executor<Rule>>;

public:
    using typename base::options_type;

    //! `mode`: the optimizer-wide mask of the masked groups (dense, bernoulli or fixed).
    explicit optimizer(mask_mode mode = dense{}, optimizer_options options = {}) : base(any_mask(std::move(mode)), options) {}
    //! Any mask policy as the optimizer-wide mask. (The self-test comes first:
    //! checking whether an optimizer is a policy must not consider this constructor.)
    template <class M>
        requires(!std::same_as<std::remove_cvref_t<M>, optimizer> && childtune::mask_policy<M>)
    explicit optimizer(M policy, optimizer_options options = {}) : base(any_mask(std::move(policy)), options) {}

    // ---- parameters -----------------------------------------------------------------

    //! Registers a parameter and its gradient buffer. The optimizer keeps views:
    //! both buffers must outlive it (or be rebound with rebind()). `key` overrides
    //! the Bernoulli tensor key derived from the name.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        register_tensor(group, std::move(name), param, grad, key, true, param.size(), 0);
    }
    //! Registers a parameter whose gradient does not exist yet (frameworks that
    //! allocate gradients lazily): steps skip it until rebind() supplies one.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param,
                       std::optional<std::uint32_t> key = std::nullopt) {
        register_tensor(group, std::move(name), param, tensor_view<const T>(nullptr, param.size()), key, false,
                        param.size(), 0);
    }
    //! Convenience for contiguous containers (std::vector, std::array, std::span).
    template <contiguous_tensor P, contiguous_tensor G>
    void add_parameter(std::size_t group, std::string name, P& param, const G& grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        using T = std::ranges::range_value_t<P>;
        static_assert(std::is_same_v<T, std::ranges::range_value_t<G>>,
                      "a parameter and its gradient must have the same element type");
        add_parameter<T>(group, std::move(name), tensor_view<T>(param), tensor_view<const T>(grad), key);
    }
    //! Registers elements [offset, offset + param.size()) of a logical tensor of
    //! `logical_size` elements; `param` and `grad` start at the slice's first
    //! element. Its masks are the logical tensor's, read at `offset`, so
    //! optimizers that each hold one slice of a tensor (under its name and key)
    //! update it bit for bit as one optimizer over the whole tensor. An empty
    //! slice (a rank whose share misses the tensor) is allowed, so that every
    //! holder registers the same tensors, keys and mask coverage. Compact
    //! Child-Tuning_D state and rules with a per-tensor phase need whole tensors.
    template <parameter_element T>
    void add_parameter_slice(std::size_t group, std::string name, std::size_t logical_size, std::size_t offset,
                             tensor_view<T> param, tensor_view<const T> grad,
                             std::optional<std::uint32_t> key = std::nullopt) {
        register_tensor(group, std::move(name), param, grad, key, true, logical_size, offset);
    }
    //! Points a registered tensor at new memory (same size and type), e.g. after
    //! the model reallocated it, and marks its gradient present. The optimizer
    //! state is kept.
    template <parameter_element T>
    void rebind(std::string_view name, tensor_view<T> param, tensor_view<const T> grad) {
        rebind(this->registry_.tensor_index(name), param, grad);
    }
    //! The same by registration index (frameworks that rebind every step skip the
    //! name lookup).
    template <parameter_element T>
    void rebind(std::size_t index, tensor_view<T> param, tensor_view<const T> grad) {
        auto& t = this->registry_.tensor(index);
        this->executor_.rebind(this->registry_, this->registry_.describe(t.group, t.name), index, param, grad);
        t.has_gradient = true;
    }
    //! Marks a tensor's gradient absent: steps skip it (no update, no decay, its
    //! state and step count unchanged), as LibTorch's optimizers skip parameters
    //! whose `grad()` is undefined. rebind() makes it present again.
    void clear_gradient(std::size_t index) { this->registry_.tensor(index).has_gradient = false; }
    //! Whether tensor `index` has a gradient now (steps skip it otherwise).
    bool has_gradient(std::size_t index) const { return this->registry_.tensor(index).has_gradient; }

    // ---- stepping ----------------------------------------------------------------------

    //! One optimizer step over every registered tensor.
    template <execution_backend E = default_backend>
    step_result step(const E& exec = E{}) {
        return this->step_with(exec);
    }
    //! Index of the first tensor (registration order) whose present gradient holds
    //! NaN or Inf: the check step() makes under nonfinite_policy::raise and skip,
    //! for callers that must decide before stepping (a distributed step agrees on
    //! it across ranks and steps with nonfinite_policy::unchecked).
    template <execution_backend E = default_backend>
    std::optional<std::size_t> first_nonfinite_gradient(const E& exec = E{}) const {
        return this->executor_.first_nonfinite(this->registry_, exec);
    }

    // ---- state file ---------------------------------------------------------------------

    //! Writes everything a resumed run needs: step counters, masks (with the
    //! Bernoulli seed or the fixed bits), masking options, group options and state.
    //! A slice is written as a tensor of its own elements, with neither offset nor
    //! logical size: whoever registers slices keeps the layout in a header of its
    //! own (sharded_optimizer's per-rank files do), and load() checks the size.
    void save(std::ostream& out) const {
        this->save_with(out, detail::masks_of(this->registry_),
                        [&](std::size_t i, std::size_t b) { return this->executor_.state(i, b); });
    }
    //! Restores a state written by save() for the same parameter set: same rule,
    //! groups (by name, in order) and tensors (by name, size and type). By
    //! default group options, masks and masking options are restored too,
    //! replacing those set since (`options.hyperparameters =
    //! hyperparameter_source::current` keeps them and restores step counts and
    //! state only); the parameter and gradient memory stays the caller's. Throws
    //! childtune::error on a truncated, corrupt, foreign or mismatched file and
    //! then changes nothing. Releases state reserved by reserve_state().
    void load(std::istream& in, const load_options& options = {}) {
        this->load_with(in, options, [](const auto&) {});
    }
    //! Saves to `path` crash-safely: a kill or a full disk mid-save leaves the
    //! previous checkpoint whole (io/atomic_file.hpp).
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "optimizer state", [&](std::ostream& out) { save(out); });
    }
    //! Loads from `path` (see load(std::istream&, const load_options&)); throws
    //! childtune::error when the file cannot be opened.
    void load(const std::string& path, const load_options& options = {}) {
        std::ifstream in(path, std::ios::binary);
        if (!in) detail::fail("cannot open optimizer state '" + path + "'");
        load(in, options);
    }

private:
    template <class T>
    void register_tensor(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                         std::optional<std::uint32_t> key, bool gradient_present, std::size_t logical_size,
                         std::size_t offset) {
        auto& r = this->registry_;
        const std::uint32_t k = r.check_new_tensor(group, name, dtype_of<T>, param.size(), logical_size, offset, key);
        const std::string where = r.describe(group, name);
        if (param.size() != grad.size())
            detail::fail(where + ": gradient has " + std::to_string(grad.size()) + " elements, parameter has " +
                         std::to_string(param.size()));
        if (gradient_present && grad.size() > 0 && !grad.data()) detail::fail(where + ": null gradient data pointer");
        r.add_tensor(group, std::move(name), k, dtype_of<T>, param.size(), logical_size, offset, gradient_present);
        try {
            this->executor_.bind_new(r, where, param, grad);
        } catch (...) {
            r.pop_tensor();
            throw;
        }
    }
};

} // namespace childtune
