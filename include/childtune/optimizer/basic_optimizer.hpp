#pragma once
//! \file
//! What every Child-Tuning optimizer does, whatever memory its tensors live in:
//! groups, mask policies, the step sequence (validate, scan, allocate, commit,
//! run, count) and the state file. It composes the registry (bookkeeping) and
//! an Executor (memory and kernels); front ends add the registration of their
//! tensor types: childtune::optimizer (host memory), childtune::thrust::optimizer
//! (a Thrust system's memory), the LibTorch optimizers.
//!
//! Child-Tuning (Xu et al., "Raise a Child in Large Language Model", EMNLP 2021)
//! updates only a child network: inside the step the gradient is masked, either
//! by a fresh Bernoulli(p) mask (Child-Tuning_F) or by a fixed Fisher-selected
//! mask (Child-Tuning_D). Groups choose their mask: the reference masks the
//! encoder layers and trains embeddings and the task head densely; any mask
//! policy (concepts.hpp) may serve any group.
//!
//! An Executor provides: `supports_compact` (and `supports_blockwise8` if true); `allocation` (with `bytes()`),
//! `allocate(requests[, host buffers][, context])`, `adopt(allocation&&)`
//! noexcept, `release(tensor, from_buffer)` noexcept, `state_bytes()`;
//! `first_nonfinite(registry, context)`; `run(registry, plan, context)`;
//! `read_gradients(registry, tensors, context)` (the listed tensors' gradients
//! on the host, widened to float, for gradient-driven mask policies); and a
//! way to read a state buffer on the host for save(). See docs/design.md.
//!
//! Every public member either succeeds or throws childtune::error and leaves
//! the optimizer as it was.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/io/state_file.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/registry/gradient_step.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/step_plan.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune {

//! The optimizer every front end derives from: registry (groups, masks, tensors,
//! counters) plus an Executor (state memory and kernels) of the update rule `Rule`.
//! Front ends add the registration of their tensor types and a public `step`.
template <update_rule Rule, class Executor>
class basic_optimizer {
public:
    //! The update rule (adamw, adam, sgd, lion, lamb or a user's update_rule).
    using rule_type = Rule;
    //! The rule's per-group hyperparameters.
    using options_type = typename Rule::options;
    //! Where state lives and what runs the kernels (CPU, Thrust, LibTorch).
    using executor_type = Executor;

    //! An optimizer with no groups yet. `mask` is the optimizer-wide policy of masked
    //! groups (bernoulli for Child-Tuning_F, fixed for Child-Tuning_D, dense, any
    //! mask_policy); throws childtune::error for invalid hyperparameters or
    //! `compact_fixed_state` with a rule or executor that cannot keep it.
    explicit basic_optimizer(any_mask mask, optimizer_options options = {}) : registry_(options) {
        if (options.compact_fixed_state && !detail::supports_compact_state<Rule>())
            detail::fail("optimizer options: the '" + std::string(Rule::name) +
                         "' rule cannot keep compact Child-Tuning_D state (its masked entries' state need not stay zero)");
        if (options.compact_fixed_state && !Executor::supports_compact)
            detail::fail("optimizer options: this optimizer's executor does not keep compact Child-Tuning_D state");
        if (options.storage == state_storage::blockwise8 && !detail::keeps_blockwise8_state<Executor>())
            detail::fail("optimizer options: this optimizer's executor does not keep 8-bit blockwise state "
                         "(state_storage::blockwise8 is for the CPU optimizer)");
        mask.validate();
        registry_.set_default_mask_unchecked(std::move(mask));
    }

    // ---- groups ------------------------------------------------------------------

    //! Adds a parameter group and returns its index. `masked` groups are masked by
    //! the optimizer-wide mask (set_mask); the others train densely.
    std::size_t add_group(std::string name, const options_type& options, bool masked = true) {
        return registry_.add_group(std::move(name), options, masked, std::nullopt);
    }
    //! Adds a group masked by a policy of its own (any mask_policy: one group
    //! Child-Tuning_F, another Child-Tuning_D, a third `dense{}`).
    template <childtune::mask_policy M>
    std::size_t add_group(std::string name, const options_type& options, M policy) {
        return registry_.add_group(std::move(name), options, true, any_mask(std::move(policy)));
    }
    //! Number of groups added.
    std::size_t group_count() const { return registry_.group_count(); }
    //! The index of the group called `name`; throws childtune::error when there is none.
    std::size_t group_index(std::string_view name) const { return registry_.group_index(name); }
    //! The name given to add_group.
    const std::string& group_name(std::size_t group) const { return registry_.group(group).name; }
    //! Whether the group was added as masked (it then uses the optimizer-wide mask
    //! unless it has a policy of its own).
    bool group_masked(std::size_t group) const { return registry_.group(group).masked; }
    //! The group's current hyperparameters.
    const options_type& group_options(std::size_t group) const { return registry_.group(group).options; }
    //! Replaces a group's hyperparameters between steps (schedulers use set_lr).
    void set_group_options(std::size_t group, const options_type& options) { registry_.set_group_options(group, options); }
    //! Sets the learning rate of one group (validated first; other options unchanged).
    void set_lr(std::size_t group, double lr) {
        options_type o = group_options(group);
        o.lr = lr;
        set_group_options(group, o);
    }
    //! Sets the learning rate of every group (validated for all before any changes).
    void set_lr(double lr) {
        for (const auto& g : registry_.groups()) {
            options_type o = g.options;
            o.lr = lr;
            Rule::validate(o, g.name);
        }
        for (std::size_t g = 0; g < group_count(); ++g) {
            options_type o = group_options(g);
            o.lr = lr;
            registry_.set_group_options(g, o);
        }
    }

    // ---- tensors -------------------------------------------------------------------

    //! The index of the tensor registered as `name`; throws childtune::error when there is none.
    std::size_t tensor_index(std::string_view name) const { return registry_.tensor_index(name); }
    //! Number of tensors registered.
    std::size_t tensor_count() const { return registry_.tensor_count(); }
    //! The names of the registered tensors, in registration order.
    std::vector<std::string> tensor_names() const {
        std::vector<std::string> names;
        for (const auto& t : registry_.tensors()) names.push_back(t.name);
        return names;
    }
    //! What mask policies see of tensor `index`.
    tensor_info tensor(std::size_t index) const {
        (void)registry_.tensor(index);
        return registry_.info(index);
    }

    // ---- masks ----------------------------------------------------------------------

    //! Sets the optimizer-wide mask (e.g. to Child-Tuning_D once the Fisher mask
    //! exists): masked groups without a policy of their own use it. Releases
    //! state reserved by reserve_state() (it was sized for the old mask).
    template <childtune::mask_policy M>
    void set_mask(M policy) {
        set_masks(any_mask(std::move(policy)), own_masks());
    }
    //! Sets the optimizer-wide mask from a 0.1 mask_mode (a built-in policy).
    void set_mask(const mask_mode& mode) { set_masks(any_mask(mode), own_masks()); }
    //! Sets the optimizer-wide mask from a policy already held in an any_mask.
    void set_mask(const any_mask& policy) { set_masks(policy, own_masks()); }
    //! Gives group `group` a policy of its own (it then ignores `masked`).
    template <childtune::mask_policy M>
    void set_group_mask(std::size_t group, M policy) {
        auto own = own_masks();
        own.at(checked_group(group)) = any_mask(std::move(policy));
        set_masks(registry_.default_mask(), std::move(own));
    }
    //! Back to the optimizer-wide mask (masked groups) or dense training.
    void clear_group_mask(std::size_t group) {
        auto own = own_masks();
        own.at(checked_group(group)).reset();
        set_masks(registry_.default_mask(), std::move(own));
    }
    //! The optimizer-wide policy.
    const any_mask& mask_policy() const { return registry_.default_mask(); }
    //! The policy group `group` applies, or null when it trains densely.
    const any_mask* group_mask(std::size_t group) const { return registry_.mask_of(checked_group(group)); }
    //! The optimizer-wide mask as the mask_mode of 0.1 (a built-in policy).
    const mask_mode& mask() const {
        if (const auto* m = registry_.default_mask().as_mask_mode()) return *m;
        detail::fail("mask(): the optimizer-wide mask is a user-defined policy, not a mask_mode; use mask_policy()");
    }
    //! The optimizer-wide options given at construction.
    const optimizer_options& options() const { return registry_.options(); }

    // ---- stepping ----------------------------------------------------------------------

    //! Number of steps applied so far; step t (0-based) draws its Bernoulli mask
    //! with counter word 3 = t.
    std::uint64_t step_count() const { return registry_.step_count(); }

    //! Validates what the next step validates and allocates, all or nothing, the
    //! optimizer state it would allocate, so that the step allocates none.
    //! Running out of memory then shows at set-up instead of at step 1, and a
    //! distributed step can agree on every rank that allocation succeeded before
    //! any rank changes a parameter. Reserved state counts in state_bytes(); it
    //! is not saved until a step used it, and set_mask() and load() release it.
    template <class... Context>
    void reserve_state(const Context&... context) {
        auto plan = detail::plan_step(registry_);
        reserved_.emplace(reservation{plan.requests, executor_.allocate(plan.requests, {}, context...)});
    }

    //! Bytes of optimizer state held (moments, momentum buffers), reserved included.
    std::size_t state_bytes() const { return executor_.state_bytes() + (reserved_ ? reserved_->state.bytes() : 0); }

    //! The executor, for adapters and tests (state memory, kernels).
    const Executor& executor() const { return executor_; }
    //! The bookkeeping (groups, tensors, masks, counters); internal, for adapters and tests.
    const detail::registry<Rule>& registry() const { return registry_; }
    //! Internal, for sharded_optimizer: how gradient-driven mask policies gather
    //! the other ranks' slices of each tensor (registry/gradient_step.hpp).
    void set_gradient_exchange(detail::gradient_exchange x) { exchange_ = std::move(x); }

protected:
    //! One step: plan (validates), NaN/Inf scan, state allocation, commit, run.
    template <class Context>
    step_result step_with(const Context& context) {
        auto plan = detail::plan_step(registry_);
        if (registry_.options().on_nonfinite != nonfinite_policy::unchecked)
            if (auto bad = executor_.first_nonfinite(registry_, context)) {
                const auto& t = registry_.tensors()[*bad];
                if (registry_.options().on_nonfinite == nonfinite_policy::raise)
                    detail::fail(registry_.describe(t.group, t.name) + ": gradient holds NaN or Inf (step skipped)");
                return {false, t.name};
            }
        // Gradient-driven policies choose this step's masks on the side (committed below).
        std::vector<detail::policy_update> updates;
        if (detail::uses_gradient_policies(registry_)) {
            updates = detail::observe_gradients(
                registry_, [&](std::span<const std::size_t> t) { return executor_.read_gradients(registry_, t, context); },
                exchange_ ? &*exchange_ : nullptr);
            plan = detail::plan_step(registry_, &updates);
        }
        auto state = reserved_ && reserved_->requests == plan.requests
                         ? std::move(reserved_->state)
                         : executor_.allocate(plan.requests, {}, context);
        reserved_.reset();
        executor_.adopt(std::move(state));
        detail::commit_plan(registry_, plan);
        detail::commit_policies(registry_, updates);
        executor_.run(registry_, plan, context);
        detail::finish_step(registry_, plan);
        return {};
    }

    //! Writes the state file; `buffer(i, b)` gives a state buffer on the host.
    template <class BufferBytes>
    void save_with(std::ostream& out, const detail::file_masks& masks, BufferBytes&& buffer) const {
        detail::write_state_file(out, registry_, masks, buffer);
    }
    //! Reads a state file and commits it; `adapt` may change the staged file
    //! (a device executor's own copies of masks, state from elsewhere) before
    //! anything is committed.
    template <class Adapt, class... Context>
    void load_with(std::istream& in, Adapt&& adapt, const Context&... context) {
        load_with(in, load_options{}, std::forward<Adapt>(adapt), context...);
    }
    //! The same, with the file's or this optimizer's hyperparameters as `options` says.
    template <class Adapt, class... Context>
    void load_with(std::istream& in, const load_options& options, Adapt&& adapt, const Context&... context) {
        auto staged = detail::read_state_file(in, registry_, Executor::supports_compact, options,
                                               detail::keeps_blockwise8_state<Executor>());
        adapt(staged);
        auto state = executor_.allocate(staged.requests, std::move(staged.buffers), context...);
        // Commit: nothing below throws.
        reserved_.reset();
        for (std::size_t i = 0; i < registry_.tensor_count(); ++i)
            executor_.release(i, staged.next.tensors()[i].buffers);
        executor_.adopt(std::move(state));
        registry_ = std::move(staged.next);
    }

    //! `group`, after checking it is a valid group index (throws childtune::error otherwise).
    std::size_t checked_group(std::size_t group) const {
        (void)registry_.group(group);
        return group;
    }
    //! Each group's own policy (empty for groups that use the optimizer-wide one).
    std::vector<std::optional<any_mask>> own_masks() const {
        std::vector<std::optional<any_mask>> own;
        for (const auto& g : registry_.groups()) own.push_back(g.own);
        return own;
    }
    //! Replaces all masks at once (validated on a copy, then committed); releases reserved state.
    void set_masks(any_mask default_mask, std::vector<std::optional<any_mask>> own) {
        auto next = registry_;
        next.set_masks(std::move(default_mask), std::move(own));
        detail::refresh_compact_words(next, detail::mask_views(next, next.step_count())); // compact state keeps its mask
        registry_ = std::move(next);
        reserved_.reset();
    }

    //! State allocated by reserve_state(), with the requests it was sized for: a step
    //! whose plan asks for exactly these adopts it.
    struct reservation {
        //! What the state was allocated for.
        std::vector<detail::state_request> requests;
        //! The allocated state.
        typename Executor::allocation state;
    };

    //! Groups, tensors, masks and counters.
    detail::registry<Rule> registry_;
    //! State memory and kernels.
    Executor executor_;
    //! State reserved by reserve_state(), until a step adopts it or a mask change drops it.
    std::optional<reservation> reserved_;
    //! Set by sharded_optimizer: the ranks' gradient slices for gradient-driven policies.
    std::optional<detail::gradient_exchange> exchange_;
};

} // namespace childtune
