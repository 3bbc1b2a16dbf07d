#pragma once
//! \file
//! Child-Tuning optimizers for LibTorch: real `torch::optim::Optimizer`
//! subclasses (param groups with their own options, `step(closure)`,
//! `zero_grad()`, `torch::save`/`torch::load`), over the core optimizer on the
//! LibTorch executor (torch/core.hpp): CPU tensors run the fused kernels in
//! place, CUDA tensors the Thrust kernels (nvcc builds) or ATen operations, all
//! with the same results. Any mask policy may mask the masked groups.
//!
//! `save` writes the core's state file (step counters, masks, masking options,
//! group options, state of every tensor) into the archive; `load` restores all of
//! it, group options included (LibTorch 1.13's own `Optimizer::load` does not),
//! so a resumed run continues bit-identically. Archives of 0.1 load too.
//!
//! Parameter names key the Bernoulli masks and the fixed masks: build the
//! optimizer from `module->named_parameters()` so they match a Fisher mask
//! computed on the same module (fisher.hpp).

#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/memory_checks.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/torch/archive.hpp>
#include <childtune/torch/core.hpp>
#include <childtune/torch/groups.hpp>
#include <childtune/torch/options.hpp>
#include <childtune/torch/tensor.hpp>

#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace childtune::torch {

//! A Child-Tuning optimizer as a `torch::optim::Optimizer`: LibTorch's param
//! groups and options, the core's masks, rule and state file underneath. CPU
//! tensors run the fused kernels in place; CUDA tensors run the Thrust kernels
//! when registered (torch/cuda_kernels.cuh), otherwise the rule as ATen
//! operations. ChildTuningAdamW, ChildTuningAdam and ChildTuningSGD are aliases.
template <class Options>
class child_tuning_optimizer : public ::torch::optim::Optimizer {
public:
    //! The options type of each param group.
    using options_type = Options;
    //! The core update rule.
    using rule_type = typename Options::rule_type;
    //! A param group with parameter names (torch/groups.hpp).
    using group_type = named_param_group<Options>;

    //! From named groups (each with its own options); `mask` masks the groups
    //! whose options say `masked` (any mask policy, or a mask_mode).
    explicit child_tuning_optimizer(std::vector<group_type> groups, any_mask mask = dense{},
                                    optimizer_options core_options = {})
        : Optimizer(torch_groups(groups), std::make_unique<Options>(first_options(groups))),
          core_(std::move(mask), core_options) {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            if (groups[g].names.size() != groups[g].params.size())
                childtune::detail::fail("param group " + std::to_string(g) + ": " + std::to_string(groups[g].names.size()) +
                                        " names for " + std::to_string(groups[g].params.size()) + " parameters");
            register_group(g, groups[g].options, groups[g].names);
        }
    }
    //! From a module's named parameters: `masked_if` picks the masked group; one
    //! that picks no parameter is an error unless core_options.allow_empty.
    child_tuning_optimizer(const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters, const Options& options,
                           any_mask mask = dense{}, const name_predicate& masked_if = every_name(),
                           optimizer_options core_options = {})
        : child_tuning_optimizer(split_by_name(named_parameters, options, masked_if, core_options.allow_empty),
                                 std::move(mask), core_options) {}
    //! From plain parameters, as torch's optimizers: all in one group, named
    //! "param_group0.<i>" (give names for Child-Tuning_D masks).
    child_tuning_optimizer(std::vector<at::Tensor> params, const Options& options, any_mask mask = dense{},
                           optimizer_options core_options = {})
        : child_tuning_optimizer(std::vector<group_type>{{generated_names(0, params.size()), params, options}},
                                 std::move(mask), core_options) {}

    //! One step; `closure` (if given) recomputes the loss with gradients enabled
    //! and its value is returned.
    at::Tensor step(LossClosure closure = nullptr) override {
        at::Tensor loss;
        if (closure) {
            ::torch::AutoGradMode enable_grad(true);
            loss = closure();
        }
        ::torch::NoGradGuard no_grad;
        sync_registration();
        sync_options();
        bind_gradients();
        last_result_ = core_.step(backend_);
        return loss;
    }

    //! What load(archive) (and so torch::load) does with hyperparameters.
    void set_load_options(const load_options& options) {
        childtune::detail::validate_load_options(options);
        load_options_ = options;
    }

    //! What the last step did (skipped steps name the offending tensor).
    const step_result& last_step() const { return last_result_; }
    //! Number of steps applied so far.
    std::uint64_t step_count() const { return core_.step_count(); }
    //! The optimizer-wide mask, when it is one of the built-in policies.
    const mask_mode& mask() const { return core_.mask(); }
    //! The optimizer-wide mask policy, whatever its type.
    const any_mask& mask_policy() const { return core_.mask_policy(); }
    //! Switches the mask of the masked groups (e.g. to a Child-Tuning_D mask once computed).
    template <childtune::mask_policy M>
    void set_mask(M policy) {
        core_.set_mask(any_mask(std::move(policy)));
    }
    //! Switches the mask of the masked groups to a built-in policy (0.1's mask_mode).
    void set_mask(const mask_mode& mode) { core_.set_mask(mode); }
    //! Switches the mask of the masked groups to a policy held in an any_mask.
    void set_mask(const any_mask& mask) { core_.set_mask(mask); }
    //! Gives param group `group` a mask policy of its own.
    template <childtune::mask_policy M>
    void set_group_mask(std::size_t group, M policy) {
        core_.set_group_mask(group, std::move(policy));
    }
    //! The name of every parameter, in registration order (groups in order).
    const std::vector<std::string>& parameter_names() const { return names_; }
    //! The core optimizer (registry, executor, state file) this optimizer drives
    //! (a torch::optimizer_core since 0.2; a childtune::optimizer before).
    const optimizer_core<rule_type>& core() const { return core_; }
    //! Threads of the fused CPU step (0: OpenMP's default, which follows
    //! torch::set_num_threads). Results do not depend on it.
    void set_threads(int threads) {
        if (threads < 0) childtune::detail::fail("set_threads: a thread count must be >= 0");
        backend_.threads = threads;
    }
    //! Sends CPU tensors through the ATen path too (for testing that path on
    //! machines without a GPU). Choose before the first step.
    void force_aten_path(bool on) {
        if (core_.step_count() > 0) childtune::detail::fail("force_aten_path: choose the path before the first step");
        std::vector<at::Tensor> params;
        for (std::size_t flat = 0; flat < names_.size(); ++flat) params.push_back(param_at(flat));
        core_.force_aten_path(params, on);
        force_aten_ = on;
    }

    //! Writes the core state file (step counters, masks, group options, state) into
    //! the archive; options changed since the last step are written too.
    void save(::torch::serialize::OutputArchive& archive) const override {
        const_cast<child_tuning_optimizer*>(this)->sync_options(); // options changed since the last step are saved too
        std::ostringstream out;
        core_.save(out);
        detail::write_core_state(archive, out.str());
    }

    //! Restores what save() wrote, for the same parameters. By default every param
    //! group's options (lr, ...), the masks and the masking options are the
    //! file's, replacing those set since (torch's own load restores no options);
    //! set_load_options() (what torch::load uses) or the overload below with
    //! hyperparameter_source::current keeps this optimizer's. Throws
    //! childtune::error and changes nothing on a corrupt or mismatched archive;
    //! load_optimizer() (torch/archive.hpp) also turns LibTorch's own errors on a
    //! damaged archive into childtune::error.
    void load(::torch::serialize::InputArchive& archive) override { load(archive, load_options_); }
    //! The same, with the archive's or this optimizer's hyperparameters as `options` says.
    void load(::torch::serialize::InputArchive& archive, const load_options& options) {
        ::torch::NoGradGuard no_grad;
        childtune::detail::validate_load_options(options);
        sync_registration();
        if (options.hyperparameters == hyperparameter_source::current) sync_options();
        std::istringstream in(detail::read_core_state(archive));
        core_.load(in, detail::read_legacy_device_state(archive, names_, [&](std::size_t flat) { return param_at(flat); },
                                                [&](std::size_t flat) { return core_.executor().where(flat) != detail::placement::host; }),
                   options);
        for (std::size_t g = 0; g < param_groups_.size(); ++g)
            param_groups_[g].set_options(
                std::make_unique<Options>(Options::from_core(core_.group_options(g), core_.group_masked(g))));
    }

private:
    static std::vector<::torch::optim::OptimizerParamGroup> torch_groups(const std::vector<group_type>& groups) {
        std::vector<::torch::optim::OptimizerParamGroup> out;
        for (const auto& g : groups) out.emplace_back(g.params, std::make_unique<Options>(g.options));
        return out;
    }
    static const Options& first_options(const std::vector<group_type>& groups) {
        if (groups.empty()) childtune::detail::fail("a Child-Tuning optimizer needs at least one parameter group");
        return groups.front().options;
    }
    static std::vector<std::string> generated_names(std::size_t group, std::size_t count) {
        std::vector<std::string> names;
        for (std::size_t i = 0; i < count; ++i) names.push_back("param_group" + std::to_string(group) + "." + std::to_string(i));
        return names;
    }
    const at::Tensor& param_at(std::size_t flat) const {
        const auto [g, i] = where_[flat];
        return param_groups_[g].params()[i];
    }

    //! Registers group g (already in param_groups_) and its parameters with the core.
    void register_group(std::size_t g, const Options& options, const std::vector<std::string>& names) {
        const std::string group_name = "param_group" + std::to_string(g);
        const auto& params = param_groups_[g].params();
        // The tensors are checked before the core sees the group: a group added
        // with add_param_group and holding an int or non-contiguous tensor would
        // otherwise stay half registered in the core after the error.
        for (std::size_t i = 0; i < params.size(); ++i) check_new(params[i], group_name + ", tensor '" + names[i] + "'");
        core_.add_group(group_name, options.to_core(), options.masked());
        for (std::size_t i = 0; i < params.size(); ++i) register_parameter(g, i, names[i]);
    }
    void register_parameter(std::size_t g, std::size_t i, const std::string& name) {
        const at::Tensor& p = param_groups_[g].params()[i];
        check_new(p, "param_group" + std::to_string(g) + ", tensor '" + name + "'");
        core_.add_parameter(g, name, p, force_aten_);
        names_.push_back(name);
        where_.emplace_back(g, i);
    }
    void check_new(const at::Tensor& p, const std::string& where) const {
        detail::check_parameter(p, where);
        if (!names_.empty() && p.device() != param_at(0).device())
            childtune::detail::fail(where + ": on " + p.device().str() + ", but the optimizer's parameters are on " +
                                    param_at(0).device().str() + " (one device per optimizer)");
    }

    //! Groups or parameters added through the base class (add_param_group,
    //! add_parameters) are registered on the next step, with generated names.
    void sync_registration() {
        for (std::size_t g = 0; g < param_groups_.size(); ++g) {
            if (g >= core_.group_count()) {
                const auto& opts = static_cast<const Options&>(param_groups_[g].options());
                register_group(g, opts, generated_names(g, param_groups_[g].params().size()));
                continue;
            }
            const auto& params = param_groups_[g].params();
            std::size_t known = 0;
            for (const auto& w : where_) known += w.first == g;
            if (params.size() < known)
                childtune::detail::fail("param_group" + std::to_string(g) + ": parameters were removed from the group");
            for (std::size_t i = known; i < params.size(); ++i)
                register_parameter(g, i, "param_group" + std::to_string(g) + "." + std::to_string(i));
        }
    }

    //! Copies the torch-side group options (which schedulers and users change) into
    //! the core, all validated before any is applied.
    void sync_options() {
        std::vector<typename rule_type::options> next;
        for (std::size_t g = 0; g < param_groups_.size(); ++g) {
            const auto& o = static_cast<const Options&>(param_groups_[g].options());
            if (o.masked() != core_.group_masked(g))
                childtune::detail::fail("param_group" + std::to_string(g) +
                                        ": `masked` cannot change after construction (it decides which tensors a fixed mask covers)");
            next.push_back(o.to_core());
            rule_type::validate(next.back(), core_.group_name(g));
        }
        for (std::size_t g = 0; g < next.size(); ++g) core_.set_group_options(g, next[g]);
    }

    //! Hands the core this step's gradients (they may have been reallocated or
    //! set to undefined by zero_grad(set_to_none)); all checked first.
    void bind_gradients() {
        std::vector<childtune::detail::bound_parameter> params;
        for (std::size_t flat = 0; flat < names_.size(); ++flat) {
            const at::Tensor& p = param_at(flat);
            params.push_back({names_[flat], p.data_ptr(), static_cast<std::size_t>(p.numel()) * p.element_size()});
        }
        for (std::size_t flat = 0; flat < names_.size(); ++flat) {
            const at::Tensor& p = param_at(flat);
            const std::string where = "tensor '" + names_[flat] + "'";
            detail::check_parameter(p, where);
            if (!p.grad().defined()) continue;
            detail::check_gradient(p, p.grad(), where);
            auto others = params;
            others.erase(others.begin() + static_cast<std::ptrdiff_t>(flat));
            childtune::detail::check_tensor_memory(where, *element_type(p.scalar_type()), static_cast<std::size_t>(p.numel()),
                                                   p.element_size(), p.data_ptr(), p.grad().data_ptr(), others);
        }
        for (std::size_t flat = 0; flat < names_.size(); ++flat) core_.set_gradient(flat, param_at(flat).grad());
    }

    optimizer_core<rule_type> core_;
    std::vector<std::string> names_;                         //!< flat index -> name
    std::vector<std::pair<std::size_t, std::size_t>> where_; //!< flat index -> (group, index in group)
    bool force_aten_ = false;
    openmp_backend backend_;
    step_result last_result_;
    load_options load_options_;
};

//! AdamW (torch flavour, or the legacy flavour of the published Child-Tuning
//! optimizer) with Child-Tuning masks.
using ChildTuningAdamW = child_tuning_optimizer<ChildTuningAdamWOptions>;
//! Adam (L2 weight decay) with Child-Tuning masks.
using ChildTuningAdam = child_tuning_optimizer<ChildTuningAdamOptions>;
//! SGD (momentum, dampening, Nesterov, L2 weight decay) with Child-Tuning masks.
using ChildTuningSGD = child_tuning_optimizer<ChildTuningSGDOptions>;

} // namespace childtune::torch
