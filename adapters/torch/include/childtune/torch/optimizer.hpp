#pragma once
//! \file
//! Child-Tuning optimizers for LibTorch: real `torch::optim::Optimizer`
//! subclasses (param groups with their own options, `step(closure)`,
//! `zero_grad()`, `torch::save`/`torch::load`), built on the core optimizer.
//!
//! - CPU tensors run the core's fused kernels on the tensor memory itself.
//! - Tensors on another device (CUDA) run a composition of ATen operations
//!   (aten_step.hpp) with the same semantics; the first such step says so once.
//!   All parameters of one optimizer must live on one device.
//! - `save` writes the core's state file (step counters, mask mode with the
//!   Bernoulli seed or the fixed bits, masking options, group options, moments)
//!   plus the device path's state into the archive; `load` restores all of it,
//!   group options included (LibTorch 1.13's own `Optimizer::load` does not), so a
//!   resumed run continues bit-identically.
//!
//! Parameter names key the Bernoulli masks and the fixed masks: build the
//! optimizer from `module->named_parameters()` so they match a Fisher mask
//! computed on the same module (fisher.hpp).

#include <childtune/error.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/torch/aten_step.hpp>
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
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace childtune::torch {

//! A parameter group with the names of its parameters.
template <class Options>
struct named_param_group {
    std::vector<std::string> names;
    std::vector<at::Tensor> params;
    Options options;
};

//! Splits a module's named parameters into a masked group (names for which
//! `masked_if` is true) and a dense group, both with `options` (`masked` set
//! accordingly). Empty groups are left out.
template <class Options>
std::vector<named_param_group<Options>> split_by_name(const ::torch::OrderedDict<std::string, at::Tensor>& named,
                                                       const Options& options, const name_predicate& masked_if) {
    named_param_group<Options> masked{{}, {}, options}, dense{{}, {}, options};
    masked.options.masked(true);
    dense.options.masked(false);
    for (const auto& item : named) {
        auto& g = masked_if(item.key()) ? masked : dense;
        g.names.push_back(item.key());
        g.params.push_back(item.value());
    }
    std::vector<named_param_group<Options>> groups;
    if (!masked.params.empty()) groups.push_back(std::move(masked));
    if (!dense.params.empty()) groups.push_back(std::move(dense));
    return groups;
}

template <class Options>
class child_tuning_optimizer : public ::torch::optim::Optimizer {
public:
    using options_type = Options;
    using rule_type = typename Options::rule_type;
    using group_type = named_param_group<Options>;

    //! From named groups (each with its own options).
    explicit child_tuning_optimizer(std::vector<group_type> groups, mask_mode mode = dense{},
                                    optimizer_options core_options = {})
        : Optimizer(torch_groups(groups), std::make_unique<Options>(first_options(groups))),
          core_(std::move(mode), core_options) {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            if (groups[g].names.size() != groups[g].params.size())
                childtune::detail::fail("param group " + std::to_string(g) + ": " + std::to_string(groups[g].names.size()) +
                                        " names for " + std::to_string(groups[g].params.size()) + " parameters");
            register_group(g, groups[g].options, groups[g].names);
        }
    }
    //! From a module's named parameters: `masked_if` picks the masked group.
    child_tuning_optimizer(const ::torch::OrderedDict<std::string, at::Tensor>& named_parameters, const Options& options,
                           mask_mode mode = dense{}, const name_predicate& masked_if = every_name(),
                           optimizer_options core_options = {})
        : child_tuning_optimizer(split_by_name(named_parameters, options, masked_if), std::move(mode), core_options) {}
    //! From plain parameters, as torch's optimizers: all in one group, named
    //! "param_group0.<i>" (give names for Child-Tuning_D masks).
    child_tuning_optimizer(std::vector<at::Tensor> params, const Options& options, mask_mode mode = dense{},
                           optimizer_options core_options = {})
        : child_tuning_optimizer(std::vector<group_type>{{generated_names(0, params.size()), params, options}},
                                 std::move(mode), core_options) {}

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
        if (core_.options().on_nonfinite != nonfinite_policy::unchecked)
            if (auto bad = first_nonfinite_on_device()) {
                last_result_ = {false, *bad};
                if (core_.options().on_nonfinite == nonfinite_policy::raise)
                    childtune::detail::fail("tensor '" + *bad + "': gradient holds NaN or Inf (step skipped)");
                return loss;
            }
        const std::uint64_t step_index = core_.step_count();
        last_result_ = core_.step(backend_);
        if (last_result_.applied) step_on_device(step_index);
        return loss;
    }

    //! What the last step did (skipped steps name the offending tensor).
    const step_result& last_step() const { return last_result_; }
    std::uint64_t step_count() const { return core_.step_count(); }
    const mask_mode& mask() const { return core_.mask(); }
    //! Switches the mask mode (e.g. to a Child-Tuning_D mask once computed).
    void set_mask(mask_mode mode) {
        core_.set_mask(std::move(mode));
        device_masks_.clear();
    }
    const std::vector<std::string>& parameter_names() const { return names_; }
    const childtune::optimizer<rule_type>& core() const { return core_; }
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
        force_aten_ = on;
        device_.clear();
        for (std::size_t flat = 0; flat < names_.size(); ++flat) {
            on_device_[flat] = !param_at(flat).device().is_cpu() || force_aten_;
            if (on_device_[flat]) device_.push_back({flat, 0, 0, {}});
        }
    }

    void save(::torch::serialize::OutputArchive& archive) const override {
        sync_options(); // options changed since the last step are saved too
        std::ostringstream core_state;
        core_.save(core_state);
        const std::string bytes = core_state.str();
        archive.write("childtune/state",
                      at::from_blob(const_cast<char*>(bytes.data()), {static_cast<std::int64_t>(bytes.size())}, at::kByte).clone());
        archive.write("childtune/device_tensors", c10::IValue(static_cast<std::int64_t>(device_.size())));
        for (std::size_t i = 0; i < device_.size(); ++i) {
            const auto& d = device_[i];
            const std::string key = "childtune/device/" + std::to_string(i) + "/";
            archive.write(key + "steps", c10::IValue(static_cast<std::int64_t>(d.steps)));
            archive.write(key + "buffers", c10::IValue(static_cast<std::int64_t>(d.buffers)));
            for (std::size_t b = 0; b < d.buffers; ++b) archive.write(key + std::to_string(b), d.state[b].cpu());
        }
    }

    void load(::torch::serialize::InputArchive& archive) override {
        ::torch::NoGradGuard no_grad;
        sync_registration();
        at::Tensor blob = read_tensor(archive, "childtune/state");
        if (blob.scalar_type() != at::kByte || blob.dim() != 1)
            childtune::detail::fail("optimizer archive: 'childtune/state' is not a byte tensor");
        blob = blob.contiguous();
        std::istringstream in(blob.numel() == 0 ? std::string()
                                                : std::string(static_cast<const char*>(blob.data_ptr()),
                                                              static_cast<std::size_t>(blob.numel())));
        const std::int64_t count = read_int(archive, "childtune/device_tensors");
        if (count < 0 || static_cast<std::uint64_t>(count) != device_.size())
            childtune::detail::fail("optimizer archive holds " + std::to_string(count) +
                                    " device tensors, this optimizer has " + std::to_string(device_.size()));
        std::vector<device_state> staged(device_.size());
        for (std::size_t i = 0; i < device_.size(); ++i) {
            const std::string key = "childtune/device/" + std::to_string(i) + "/";
            const std::int64_t steps = read_int(archive, key + "steps");
            const std::int64_t buffers = read_int(archive, key + "buffers");
            if (steps < 0 || buffers < 0 || buffers > 2)
                childtune::detail::fail("optimizer archive is corrupt: '" + names_[device_[i].param] + "' has " +
                                        std::to_string(steps) + " steps and " + std::to_string(buffers) + " state buffers");
            staged[i].steps = static_cast<std::uint64_t>(steps);
            staged[i].buffers = static_cast<std::size_t>(buffers);
            const at::Tensor& p = param_at(device_[i].param);
            for (std::size_t b = 0; b < staged[i].buffers; ++b) {
                at::Tensor s = read_tensor(archive, key + std::to_string(b));
                if (s.numel() != p.numel())
                    childtune::detail::fail("optimizer archive: state of '" + names_[device_[i].param] + "' has " +
                                            std::to_string(s.numel()) + " elements, the parameter " + std::to_string(p.numel()));
                staged[i].state[b] = s.to(p.device(), state_type(p)).reshape(p.sizes());
            }
        }
        core_.load(in); // validates everything it holds; throws before changing anything
        for (std::size_t i = 0; i < device_.size(); ++i) {
            device_[i].steps = staged[i].steps;
            device_[i].buffers = staged[i].buffers;
            for (std::size_t b = 0; b < 2; ++b) device_[i].state[b] = std::move(staged[i].state[b]);
        }
        device_masks_.clear();
        for (std::size_t g = 0; g < param_groups_.size(); ++g)
            param_groups_[g].set_options(std::make_unique<Options>(
                Options::from_core(core_.group_options(g), core_.group_masked(g))));
    }

private:
    //! Entries of an archive this optimizer reads. A missing or mistyped entry is
    //! a childtune::error naming it (LibTorch would throw its own
    //! ObjectAttributeError or c10::Error, which name nothing of ours).
    static at::Tensor read_tensor(::torch::serialize::InputArchive& archive, const std::string& key) {
        at::Tensor t;
        if (!archive.try_read(key, t)) childtune::detail::fail("optimizer archive: no tensor '" + key + "' (not a childtune archive?)");
        return t;
    }
    static std::int64_t read_int(::torch::serialize::InputArchive& archive, const std::string& key) {
        c10::IValue v;
        if (!archive.try_read(key, v)) childtune::detail::fail("optimizer archive: no entry '" + key + "' (not a childtune archive?)");
        if (!v.isInt()) childtune::detail::fail("optimizer archive: '" + key + "' is a " + v.tagKind() + ", not an integer");
        return v.toInt();
    }

    //! State of one parameter on the ATen path.
    struct device_state {
        std::size_t param = 0; //!< flat parameter index
        std::uint64_t steps = 0;
        std::size_t buffers = 0;
        at::Tensor state[2];
    };

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
    static at::ScalarType state_type(const at::Tensor& p) {
        return p.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
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
        for (std::size_t i = 0; i < params.size(); ++i) {
            const std::string where = group_name + ", tensor '" + names[i] + "'";
            detail::check_parameter(params[i], where);
            const at::Tensor& first = names_.empty() ? params.front() : param_at(0);
            if (params[i].device() != first.device())
                childtune::detail::fail(where + ": on " + params[i].device().str() + ", but the optimizer's parameters are on " +
                                        first.device().str() + " (one device per optimizer)");
        }
        core_.add_group(group_name, options.to_core(), options.masked());
        for (std::size_t i = 0; i < params.size(); ++i) register_parameter(g, i, names[i]);
    }
    void register_parameter(std::size_t g, std::size_t i, const std::string& name) {
        const at::Tensor& p = param_groups_[g].params()[i];
        const std::string where = "param_group" + std::to_string(g) + ", tensor '" + name + "'";
        detail::check_parameter(p, where);
        if (!names_.empty() && p.device() != param_at(0).device())
            childtune::detail::fail(where + ": on " + p.device().str() + ", but the optimizer's parameters are on " +
                                    param_at(0).device().str() + " (one device per optimizer)");
        const bool on_device = !p.device().is_cpu() || force_aten_;
        const std::size_t flat = names_.size();
        // The core registers every parameter (names, sizes, keys, mask coverage,
        // step counter, group options, state file); the ATen path's parameters
        // have no core gradient ever and keep their state here.
        std::visit([&](auto tag) {
            using T = decltype(tag);
            core_.template add_parameter<T>(g, name, detail::view_of<T>(p));
        }, element_tag(p));
        names_.push_back(name);
        where_.emplace_back(g, i);
        if (on_device) device_.push_back({flat, 0, 0, {}});
        on_device_.push_back(on_device);
    }
    static std::variant<float, double, bfloat16, float16> element_tag(const at::Tensor& p) {
        switch (*element_type(p.scalar_type())) {
        case dtype::float64: return double{};
        case dtype::bfloat16: return bfloat16{};
        case dtype::float16: return float16{};
        default: return float{};
        }
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
    void sync_options() const {
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

    //! Points the core at this step's gradients (they may have been reallocated or
    //! set to undefined by zero_grad(set_to_none)).
    void bind_gradients() {
        for (std::size_t flat = 0; flat < names_.size(); ++flat) {
            const at::Tensor& p = param_at(flat);
            const at::Tensor& g = p.grad();
            const std::string where = "tensor '" + names_[flat] + "'";
            detail::check_parameter(p, where);
            if (g.defined()) detail::check_gradient(p, g, where);
            if (on_device_[flat] || !g.defined()) {
                core_.clear_gradient(flat);
                continue;
            }
            std::visit([&](auto tag) {
                using T = decltype(tag);
                core_.template rebind<T>(flat, detail::view_of<T>(p), detail::view_of<const T>(g));
            }, element_tag(p));
        }
    }

    std::optional<std::string> first_nonfinite_on_device() const {
        for (const auto& d : device_) {
            const at::Tensor& g = param_at(d.param).grad();
            if (g.defined() && !at::isfinite(g).all().template item<bool>()) return names_[d.param];
        }
        return std::nullopt;
    }

    void step_on_device(std::uint64_t step_index) {
        if (device_.empty()) return;
        if (!param_at(device_.front().param).device().is_cpu()) {
            TORCH_WARN_ONCE("childtune: parameters on ", param_at(device_.front().param).device(),
                            " are stepped by a composition of ATen operations (the fused kernels run on CPU tensors; "
                            "CUDA kernels come with the Thrust adapter)");
        }
        for (auto& d : device_) {
            at::Tensor p = param_at(d.param);
            const at::Tensor& g = p.grad();
            if (!g.defined()) continue;
            const auto [group, index] = where_[d.param];
            (void)index;
            const auto& o = core_.group_options(group);
            const std::size_t needed = rule_type::state_buffers(o);
            const bool fresh = d.buffers < needed;
            for (std::size_t b = d.buffers; b < needed; ++b)
                d.state[b] = at::zeros_like(p, p.options().dtype(state_type(p)));
            d.buffers = std::max(d.buffers, needed);
            at::Tensor flat_p = p.view({-1});
            at::Tensor state[2] = {d.state[0].defined() ? d.state[0].view({-1}) : at::Tensor(),
                                   d.state[1].defined() ? d.state[1].view({-1}) : at::Tensor()};
            detail::aten_step<rule_type>(o, d.steps + 1, fresh, flat_p, g.view({-1}), state,
                                         device_mask(d.param, group, step_index), core_.options().masking);
            ++d.steps;
        }
    }

    //! This step's keep tensor of a device parameter (fixed masks are cached).
    detail::aten_mask device_mask(std::size_t flat, std::size_t group, std::uint64_t step_index) {
        if (!core_.group_masked(group)) return {};
        const at::Tensor& p = param_at(flat);
        const auto size = static_cast<std::size_t>(p.numel());
        return std::visit(
            [&](const auto& m) -> detail::aten_mask {
                using M = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<M, dense>) {
                    return {};
                } else if constexpr (std::is_same_v<M, bernoulli>) {
                    const auto view = m.view(stable_tensor_key(names_[flat]), step_index);
                    return {detail::keep_tensor(view, size).to(p.device()), m.p};
                } else {
                    auto it = device_masks_.find(flat);
                    if (it == device_masks_.end())
                        it = device_masks_.emplace(flat, detail::keep_tensor(*m.masks.find(names_[flat])).to(p.device())).first;
                    return {it->second, 1.0};
                }
            },
            core_.mask());
    }

    //! The torch-side group options are the source of truth (schedulers and users
    //! change them there); the core's copy is refreshed before every step and
    //! save, which is why it may change in const members.
    mutable childtune::optimizer<rule_type> core_;
    std::vector<std::string> names_;                           //!< flat index -> name
    std::vector<std::pair<std::size_t, std::size_t>> where_;   //!< flat index -> (group, index in group)
    std::vector<bool> on_device_;                              //!< flat index -> stepped by the ATen path
    std::vector<device_state> device_;
    std::unordered_map<std::size_t, at::Tensor> device_masks_; //!< fixed masks expanded on the device
    bool force_aten_ = false;
    openmp_backend backend_;
    step_result last_result_;
};

//! AdamW (torch flavour, or the legacy flavour of the published Child-Tuning
//! optimizer) with Child-Tuning masks.
using ChildTuningAdamW = child_tuning_optimizer<ChildTuningAdamWOptions>;
//! Adam (L2 weight decay) with Child-Tuning masks.
using ChildTuningAdam = child_tuning_optimizer<ChildTuningAdamOptions>;
//! SGD (momentum, dampening, Nesterov, L2 weight decay) with Child-Tuning masks.
using ChildTuningSGD = child_tuning_optimizer<ChildTuningSGDOptions>;

} // namespace childtune::torch
