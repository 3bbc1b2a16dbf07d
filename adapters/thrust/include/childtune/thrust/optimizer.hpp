#pragma once
//! \file
//! A Child-Tuning optimizer for parameters in a Thrust system's memory: the
//! core optimizer's groups, mask modes, step counts and state file, with the
//! optimizer state in device memory and every step a fused batched launch per
//! group (step.hpp).
//!
//! Step for step it computes what childtune::optimizer computes on the host (the
//! same keep decisions, the same per-tensor step counts and bias corrections), and
//! its save()/load() use the core's state file, so a checkpoint written on a GPU
//! resumes on the CPU and back. What it leaves out: absent gradients and rebinding
//! (device gradients are registered once and always present), the NaN/Inf pre-scan
//! (steps behave as nonfinite_policy::unchecked) and compact Child-Tuning_D state.
//! State is float for float, bfloat16 and float16 parameters, double for double.
//!
//! Every member that throws childtune::error leaves the optimizer as it was.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/state_format.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/thrust/mask_set.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/thrust/system.hpp>
#include <childtune/update/masking.hpp>

#include <thrust/device_vector.h>

#include <array>
#include <cstdint>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! How the masked groups are masked: the core's dense and Bernoulli modes, or a
//! fixed mask whose words are in device memory.
using device_mask_mode = std::variant<dense, bernoulli, device_mask_set>;

template <update_rule Rule, parameter_element P = float>
class optimizer {
public:
    using rule_type = Rule;
    using options_type = typename Rule::options;
    using state_type = std::conditional_t<std::is_same_v<P, double>, double, float>;

    explicit optimizer(masking_options masking = {}) : masking_(masking) {
        if (masking.target != mask_target::gradient && masking.target != mask_target::update)
            childtune::detail::fail("optimizer options: unknown mask target");
    }

    // ---- groups ----------------------------------------------------------------

    //! Adds a parameter group and returns its index; `masked` groups follow the
    //! mask mode, the others train densely.
    std::size_t add_group(std::string name, const options_type& options, bool masked = true) {
        if (name.empty()) childtune::detail::fail("a group name must not be empty");
        for (const auto& g : groups_)
            if (g.name == name) childtune::detail::fail("group '" + name + "' added twice");
        Rule::validate(options, name);
        groups_.push_back({std::move(name), options, masked});
        return groups_.size() - 1;
    }
    std::size_t group_count() const { return groups_.size(); }
    const options_type& group_options(std::size_t group) const { return checked_group(group).options; }
    void set_group_options(std::size_t group, const options_type& options) {
        Rule::validate(options, checked_group(group).name);
        groups_[group].options = options;
    }
    void set_lr(std::size_t group, double lr) {
        options_type o = group_options(group);
        o.lr = lr;
        set_group_options(group, o);
    }

    // ---- parameters --------------------------------------------------------------

    //! Registers `size` elements at `param` and their gradient at `grad`, both in
    //! the memory of `policy`'s system (checked once, here). `key` overrides the
    //! Bernoulli tensor key derived from the name.
    template <class Policy>
    void add_parameter(const Policy& policy, std::size_t group, std::string name, P* param, const P* grad,
                       std::uint64_t size, std::optional<std::uint32_t> key = std::nullopt) {
        detail::require_device_policy<Policy>();
        (void)policy;
        checked_group(group);
        if (name.empty()) childtune::detail::fail("group '" + groups_[group].name + "': a tensor name must not be empty");
        const auto context = [&] { return "group '" + groups_[group].name + "', tensor '" + name + "'"; };
        if (index_.contains(name)) childtune::detail::fail(context() + ": registered twice (the name is taken)");
        if (size == 0) childtune::detail::fail(context() + ": has no element");
        if (size > childtune::detail::max_tensor_elements<P>)
            childtune::detail::fail(context() + ": " + std::to_string(size) +
                                    " elements exceed the address space (corrupt or made-up size)");
        if (!param || !grad) childtune::detail::fail(context() + ": null parameter or gradient pointer");
        // Overlap, not only equality: a gradient starting inside its parameter is
        // read after the parallel step overwrote part of it.
        const std::uint64_t bytes = size * sizeof(P);
        if (childtune::detail::ranges_overlap(param, bytes, grad, bytes))
            childtune::detail::fail(context() + ": parameter and gradient memory overlap");
        for (const auto& t : tensors_) {
            if (childtune::detail::ranges_overlap(param, bytes, t.param, t.size * sizeof(P)))
                childtune::detail::fail(context() + ": parameter memory overlaps tensor '" + t.name + "' (registered twice?)");
            if (childtune::detail::ranges_overlap(grad, bytes, t.param, t.size * sizeof(P)))
                childtune::detail::fail(context() + ": gradient memory overlaps the parameter of tensor '" + t.name + "'");
        }
        detail::require_system_memory(param, context, "the parameter");
        detail::require_system_memory(grad, context, "the gradient");
        const std::uint32_t k = key.value_or(stable_tensor_key(name));
        for (const auto& t : tensors_)
            if (t.key == k)
                childtune::detail::fail(context() + ": its Bernoulli key collides with tensor '" + t.name +
                                        "'; pass an explicit key");
        if (const auto* f = std::get_if<device_mask_set>(&mode_); f && groups_[group].masked) (void)f->view(name, size);
        tensor_record t;
        t.name = std::move(name);
        t.group = group;
        t.key = k;
        t.param = param;
        t.grad = grad;
        t.size = size;
        tensors_.push_back(std::move(t));
        try {
            index_.emplace(tensors_.back().name, tensors_.size() - 1);
        } catch (...) {
            tensors_.pop_back();
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
    std::size_t tensor_count() const { return tensors_.size(); }

    // ---- mask ---------------------------------------------------------------------

    //! Switches the mask mode (e.g. to Child-Tuning_D once device_mask_set exists).
    //! A fixed mask must cover every tensor of a masked group with its size.
    void set_mask(device_mask_mode mode) {
        if (const auto* b = std::get_if<bernoulli>(&mode)) b->validate();
        if (const auto* f = std::get_if<device_mask_set>(&mode)) check_covers(*f);
        mode_ = std::move(mode);
    }
    const device_mask_mode& mask() const { return mode_; }

    // ---- stepping ---------------------------------------------------------------------

    std::uint64_t step_count() const { return step_count_; }

    //! One step over every registered tensor: one fused launch per group on `policy`.
    template <class Policy>
    void step(const Policy& policy) {
        detail::require_device_policy<Policy>();
        if (const auto* f = std::get_if<device_mask_set>(&mode_)) check_covers(*f);
        // Allocate the state first tensors (or a rule switched to more buffers)
        // need; committed only when every allocation succeeded.
        std::vector<std::pair<std::size_t, ::thrust::device_vector<state_type>>> fresh;
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            for (std::size_t b = tensors_[i].buffers; b < buffers_of(tensors_[i]); ++b)
                fresh.emplace_back(i * 2 + b, ::thrust::device_vector<state_type>(tensors_[i].size, state_type(0)));
        std::vector<bool> fresh_state(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) fresh_state[i] = tensors_[i].buffers < buffers_of(tensors_[i]);
        for (auto& [slot, buffer] : fresh) tensors_[slot / 2].state[slot % 2].swap(buffer);
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            tensors_[i].buffers = std::max(tensors_[i].buffers, buffers_of(tensors_[i]));

        for (std::size_t g = 0; g < groups_.size(); ++g) {
            if (!groups_[g].masked) {
                run_group(policy, g, fresh_state, [](const tensor_record&) { return dense_view{}; });
                continue;
            }
            std::visit(
                [&](const auto& m) {
                    using M = std::decay_t<decltype(m)>;
                    if constexpr (std::is_same_v<M, device_mask_set>)
                        run_group(policy, g, fresh_state, [&](const tensor_record& t) { return m.view(t.name, t.size); });
                    else
                        run_group(policy, g, fresh_state, [&](const tensor_record& t) { return m.view(t.key, step_count_); });
                },
                mode_);
        }
        for (auto& t : tensors_) ++t.steps;
        ++step_count_;
    }

    //! Bytes of optimizer state in device memory.
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& t : tensors_) n += (t.state[0].size() + t.state[1].size()) * sizeof(state_type);
        return n;
    }
    //! A copy on the host of state buffer `buffer` of tensor `name` (empty before
    //! its first step).
    template <class Policy>
    std::vector<state_type> state(const Policy& policy, std::string_view name, std::size_t buffer) const {
        const tensor_record& t = find(name);
        if (buffer >= 2) childtune::detail::fail("tensor '" + t.name + "': state buffer " + std::to_string(buffer) + " does not exist");
        std::vector<state_type> out(t.state[buffer].size());
        detail::copy_to_host(policy, ::thrust::raw_pointer_cast(t.state[buffer].data()), out.size(), out.data());
        return out;
    }

    // ---- state file: the core optimizer's format ------------------------------------------

    template <class Policy>
    void save(const Policy& policy, std::ostream& out) const {
        detail::require_device_policy<Policy>();
        mask_mode mode = dense{};
        if (const auto* b = std::get_if<bernoulli>(&mode_)) mode = *b;
        else if (const auto* f = std::get_if<device_mask_set>(&mode_)) mode = fixed{f->download(policy)};
        childtune::detail::binary_writer w(out);
        childtune::detail::write_state_preamble(w, Rule::name, {step_count_, std::move(mode), masking_});
        childtune::detail::write_state_groups<Rule>(w, groups_);
        w.value<std::uint64_t>(tensors_.size());
        std::vector<state_type> host;
        for (const auto& t : tensors_) {
            childtune::detail::write_state_tensor(w, state_record(t, t.steps, t.buffers));
            for (std::size_t b = 0; b < t.buffers; ++b) {
                host.resize(t.size);
                detail::copy_to_host(policy, ::thrust::raw_pointer_cast(t.state[b].data()), t.size, host.data());
                w.array(std::span<const state_type>(host));
            }
        }
        w.finish();
    }

    //! Restores a state file of the same parameter set (written by this class or by
    //! childtune::optimizer with the same groups, tensors, types and state
    //! precision, without compact state). Throws childtune::error on a truncated,
    //! corrupt, foreign or mismatched file and then changes nothing.
    template <class Policy>
    void load(const Policy& policy, std::istream& in) {
        detail::require_device_policy<Policy>();
        childtune::detail::binary_reader r(in, "optimizer state");
        childtune::detail::state_preamble preamble = childtune::detail::read_state_preamble(r, Rule::name);
        std::vector<group_record> groups = childtune::detail::read_state_groups<Rule>(r, groups_);
        childtune::detail::check_state_tensor_count(r, tensors_.size());
        struct staged_tensor {
            std::uint64_t steps = 0;
            std::size_t buffers = 0;
            std::vector<state_type> state[2];
        };
        std::vector<staged_tensor> staged(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            const auto record = childtune::detail::read_state_tensor(r, state_record(t, 0, 0), Rule::max_state_buffers);
            if (record.compact)
                childtune::detail::fail("optimizer state, tensor '" + t.name +
                                        "': holds compact Child-Tuning_D state, which this optimizer does not keep");
            auto& s = staged[i];
            s.steps = record.steps;
            s.buffers = record.buffers;
            for (std::size_t b = 0; b < s.buffers; ++b) {
                s.state[b].resize(t.size);
                r.array_into(std::span<state_type>(s.state[b]));
            }
        }
        r.finish();

        // Everything that can fail before the commit: the mask's coverage and the
        // device allocations.
        device_mask_mode device_mode = dense{};
        if (const auto* b = std::get_if<bernoulli>(&preamble.mode)) device_mode = *b;
        else if (const auto* f = std::get_if<fixed>(&preamble.mode)) device_mode = device_mask_set::upload(policy, f->masks);
        if (const auto* f = std::get_if<device_mask_set>(&device_mode)) check_covers(*f, groups);
        std::vector<std::array<::thrust::device_vector<state_type>, 2>> uploaded(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            for (std::size_t b = 0; b < staged[i].buffers; ++b) {
                uploaded[i][b].resize(tensors_[i].size);
                detail::copy_to_system(policy, staged[i].state[b].data(), tensors_[i].size,
                                       ::thrust::raw_pointer_cast(uploaded[i][b].data()));
            }

        // Commit: nothing below throws.
        step_count_ = preamble.steps;
        mode_ = std::move(device_mode);
        masking_ = preamble.masking;
        groups_ = std::move(groups);
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            t.steps = staged[i].steps;
            t.buffers = staged[i].buffers;
            for (std::size_t b = 0; b < 2; ++b) t.state[b].swap(uploaded[i][b]);
        }
    }

private:
    struct group_record {
        std::string name;
        options_type options;
        bool masked;
    };
    struct tensor_record {
        std::string name;
        std::size_t group = 0;
        std::uint32_t key = 0;
        P* param = nullptr;
        const P* grad = nullptr;
        std::uint64_t size = 0;
        std::uint64_t steps = 0;
        std::size_t buffers = 0; //!< state buffers allocated
        ::thrust::device_vector<state_type> state[2];
    };

    static childtune::detail::state_tensor_record state_record(const tensor_record& t, std::uint64_t steps,
                                                               std::size_t buffers) {
        return {t.name, t.group, t.key, dtype_of<P>, t.size, dtype_of<state_type>, steps, buffers, false};
    }

    std::size_t buffers_of(const tensor_record& t) const { return Rule::state_buffers(groups_[t.group].options); }

    //! One batched step of group g's tensors with the mask views `view_of` makes.
    template <class Policy, class ViewOf>
    void run_group(const Policy& policy, std::size_t g, const std::vector<bool>& fresh_state, const ViewOf& view_of) {
        using view_type = decltype(view_of(tensors_.front()));
        std::vector<tensor_step<P, state_type, view_type>> batch;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            if (t.group != g) continue;
            batch.push_back({t.name, t.param, t.grad,
                             {::thrust::raw_pointer_cast(t.state[0].data()), ::thrust::raw_pointer_cast(t.state[1].data())},
                             t.size, view_of(t), t.steps + 1, fresh_state[i]});
        }
        if (!batch.empty())
            childtune::thrust::step<Rule>(policy, groups_[g].options, masking_, batch, memory_check::off);
    }

    void check_covers(const device_mask_set& masks) const { check_covers(masks, groups_); }
    //! A fixed mask must hold every masked tensor with its size, and nothing else.
    void check_covers(const device_mask_set& masks, const std::vector<group_record>& groups) const {
        std::size_t covered = 0;
        for (const auto& t : tensors_)
            if (groups[t.group].masked) {
                (void)masks.view(t.name, t.size);
                ++covered;
            }
        if (covered != masks.tensor_count())
            for (const auto& e : masks.entries()) {
                const auto it = index_.find(e.name);
                if (it == index_.end())
                    childtune::detail::fail("fixed mask: tensor '" + e.name +
                                            "' is not registered (mask built for a different parameter set?)");
                if (!groups[tensors_[it->second].group].masked)
                    childtune::detail::fail("fixed mask: tensor '" + e.name + "' is in unmasked group '" +
                                            groups[tensors_[it->second].group].name + "'");
            }
    }

    const group_record& checked_group(std::size_t group) const {
        if (group >= groups_.size())
            childtune::detail::fail("group index " + std::to_string(group) + " is out of range (" +
                                    std::to_string(groups_.size()) + " groups)");
        return groups_[group];
    }
    const tensor_record& find(std::string_view name) const {
        const auto it = index_.find(std::string(name));
        if (it == index_.end()) childtune::detail::fail("no tensor named '" + std::string(name) + "'");
        return tensors_[it->second];
    }

    masking_options masking_;
    device_mask_mode mode_ = dense{};
    std::vector<group_record> groups_;
    std::vector<tensor_record> tensors_;
    std::unordered_map<std::string, std::size_t> index_;
    std::uint64_t step_count_ = 0;
};

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
