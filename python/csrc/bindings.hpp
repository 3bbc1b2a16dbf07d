#pragma once
// What the two translation units of childtune._C share (module.cpp,
// rules.cpp): the optimizer binding over one update rule. The rules are split
// over two units so that the extension builds on two cores in parallel.

#include <torch/extension.h>

#include <childtune/error.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/magnitude.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/refreshed_fisher.hpp>
#include <childtune/optimizer/summary.hpp>
#include <childtune/torch/archive.hpp>
#include <childtune/torch/optimizer.hpp>
#include <childtune/torch/options.hpp>
#include <childtune/torch/tensor.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;
namespace ct = childtune;
namespace ctt = childtune::torch;

namespace childtune_py {

inline std::string group_name(std::size_t g) { return "param_group" + std::to_string(g); }

//! A group's rule options from the doubles the Python side sends (the rule's
//! state-file order, Rule::to_values), validated; the error names the group.
template <class Rule>
typename Rule::options options_from(const std::vector<double>& values, std::size_t g) {
    std::array<double, Rule::option_count> v{};
    if (values.size() != v.size())
        ct::detail::fail(group_name(g) + ": " + std::to_string(values.size()) + " option values for '" +
                         std::string(Rule::name) + "', expected " + std::to_string(v.size()));
    std::copy(values.begin(), values.end(), v.begin());
    auto o = Rule::from_values(v);
    Rule::validate(o, group_name(g));
    return o;
}

//! A 0/1 mask tensor (bool, integer or floating) as packed bits; any other
//! value is an error naming the parameter.
inline ct::bit_mask bits_of(const std::string& name, const at::Tensor& mask) {
    if (mask.is_sparse()) ct::detail::fail("gradient mask of '" + name + "': a sparse mask is not supported");
    at::Tensor m = mask.detach().to(at::kCPU).reshape({-1});
    if (m.scalar_type() != at::kBool) {
        if (m.is_complex()) ct::detail::fail("gradient mask of '" + name + "': complex values are not 0/1");
        const at::Tensor bad = (m != 0) & (m != 1);
        if (bad.any().item<bool>()) {
            const auto first = bad.nonzero()[0][0].item<std::int64_t>();
            ct::detail::fail("gradient mask of '" + name + "': element " + std::to_string(first) + " is " +
                             std::to_string(m[first].item<double>()) + ", not 0 or 1");
        }
        m = m != 0;
    }
    m = m.contiguous();
    const auto n = static_cast<std::size_t>(m.numel());
    const bool* b = m.data_ptr<bool>();
    ct::bit_mask out(n);
    auto words = out.words();
    for (std::size_t i = 0; i < n; ++i)
        if (b[i]) words[i >> 6] |= std::uint64_t{1} << (i & 63);
    return out;
}

//! A keep ratio: one number, or (when `per_group` lists any) one per group name.
inline ct::keep_ratio keep_ratio_of(double p, const std::map<std::string, double>& per_group) {
    return per_group.empty() ? ct::keep_ratio(p) : ct::keep_ratio::per_group(per_group);
}
inline ct::selection_scope scope_of(const std::string& who, const std::string& scope) {
    if (scope == "per_tensor") return ct::selection_scope::per_tensor;
    if (scope == "global") return ct::selection_scope::global;
    ct::detail::fail(who + ": scope '" + scope + "' is neither 'per_tensor' nor 'global'");
}
inline ct::selection_rule rule_of(const std::string& who, const std::string& rule) {
    if (rule == "exact_count") return ct::selection_rule::exact_count;
    if (rule == "percentile") return ct::selection_rule::percentile;
    ct::detail::fail(who + ": rule '" + rule + "' is neither 'exact_count' nor 'percentile'");
}

inline at::Tensor bool_tensor_of(const ct::bit_mask& m) {
    at::Tensor t = at::empty({static_cast<std::int64_t>(m.size())}, at::kBool);
    bool* b = t.data_ptr<bool>();
    for (std::size_t i = 0; i < m.size(); ++i) b[i] = m.test(i);
    return t;
}

//! One update rule's optimizer, as the Python classes drive it: groups of
//! (names, parameters, option values, masked), the masks, one step, the state file.
template <class Rule>
class optimizer_binding {
public:
    using options_type = ctt::rule_options<Rule>;
    using optimizer_type = ctt::child_tuning_optimizer<options_type>;

    optimizer_binding(const std::vector<std::vector<std::string>>& names, const std::vector<std::vector<at::Tensor>>& params,
                      const std::vector<std::vector<double>>& values, const std::vector<bool>& masked,
                      const std::string& state) {
        if (names.size() != params.size() || values.size() != params.size() || masked.size() != params.size())
            ct::detail::fail("optimizer: names, parameters, option values and masked flags differ in group count");
        std::vector<ctt::named_param_group<options_type>> groups;
        for (std::size_t g = 0; g < params.size(); ++g)
            groups.push_back({names[g], params[g], options_type(options_from<Rule>(values[g], g), masked[g])});
        opt_ = std::make_unique<optimizer_type>(std::move(groups), ct::dense{}, core_options(state));
    }

    //! The core options of a `state` keyword: "fp32" (float moments) or "8bit"
    //! (state_storage::blockwise8, CPU parameters only).
    static ct::optimizer_options core_options(const std::string& state) {
        ct::optimizer_options o;
        if (state == "8bit") o.storage = ct::state_storage::blockwise8;
        else if (state != "fp32") ct::detail::fail("optimizer: state must be 'fp32' or '8bit', not '" + state + "'");
        return o;
    }
    //! Bytes of optimizer state held now (8-bit state: about 2.03 per AdamW parameter, fp32: 8).
    std::size_t state_bytes() const { return opt_->core().state_bytes(); }

    //! Validates every group's values, then applies them all (schedulers change lr
    //! between steps; nothing changes when one group's values are bad).
    void set_values(const std::vector<std::vector<double>>& values, const std::vector<bool>& masked) {
        auto& groups = opt_->param_groups();
        if (values.size() != groups.size() || masked.size() != groups.size())
            ct::detail::fail("optimizer: " + std::to_string(values.size()) + " groups of option values for " +
                             std::to_string(groups.size()) + " param groups");
        std::vector<options_type> next;
        for (std::size_t g = 0; g < values.size(); ++g) {
            const auto& current = static_cast<const options_type&>(groups[g].options());
            if (masked[g] != current.masked())
                ct::detail::fail(group_name(g) + ": `masked` cannot change after construction (it is " +
                                 (current.masked() ? "True" : "False") + "; it decides which tensors a mask covers)");
            next.emplace_back(options_from<Rule>(values[g], g), masked[g]);
        }
        for (std::size_t g = 0; g < next.size(); ++g) groups[g].set_options(std::make_unique<options_type>(next[g]));
    }

    //! A group added after construction (torch's add_param_group); its tensors
    //! are registered with generated names ("param_group<g>.<i>") on the next step.
    void add_group(const std::vector<at::Tensor>& params, const std::vector<double>& values, bool masked) {
        const std::size_t g = opt_->param_groups().size();
        for (std::size_t i = 0; i < params.size(); ++i)
            ctt::detail::check_parameter(params[i], group_name(g) + ", tensor '" + group_name(g) + "." + std::to_string(i) + "'");
        opt_->add_param_group(::torch::optim::OptimizerParamGroup(
            params, std::make_unique<options_type>(options_from<Rule>(values, g), masked)));
    }

    //! One step (the GIL is released: the fused kernels run on OpenMP threads).
    //! Returns (applied, first tensor with a non-finite gradient when skipped).
    std::pair<bool, std::string> step() {
        py::gil_scoped_release release;
        opt_->step();
        return {opt_->last_step().applied, opt_->last_step().nonfinite_tensor};
    }

    void set_dense() { opt_->set_mask(ct::dense{}); }
    void set_bernoulli(double p, std::uint64_t seed) {
        const ct::bernoulli b{.p = p, .seed = seed};
        b.validate();
        opt_->set_mask(b);
    }
    //! A fixed (Child-Tuning_D) mask: one 0/1 tensor per masked tensor, by name.
    void set_fixed(const std::vector<std::pair<std::string, at::Tensor>>& masks) {
        ct::mask_set set;
        for (const auto& [name, m] : masks) set.add(name, bits_of(name, m));
        opt_->set_mask(ct::fixed{std::move(set)});
    }

    //! SIFT's magnitude mask (mask/magnitude.hpp), validated before it replaces the mask.
    void set_magnitude(double p, const std::map<std::string, double>& per_group, const std::string& scope,
                       const std::string& rule, std::uint64_t window) {
        const std::string who = "magnitude mask";
        ct::magnitude m{.p = keep_ratio_of(p, per_group), .scope = scope_of(who, scope), .rule = rule_of(who, rule),
                        .window = window};
        m.validate();
        opt_->set_mask(std::move(m));
    }
    //! DPS's refreshed Fisher mask (mask/refreshed_fisher.hpp), validated first.
    void set_refreshed_fisher(double p, const std::map<std::string, double>& per_group, const std::string& scope,
                              const std::string& rule, std::uint64_t warmup, std::uint64_t period,
                              std::uint64_t dense_steps) {
        const std::string who = "refreshed Fisher mask";
        ct::refreshed_fisher m{.p = keep_ratio_of(p, per_group), .scope = scope_of(who, scope),
                               .rule = rule_of(who, rule), .warmup = warmup, .period = period,
                               .dense_steps = dense_steps};
        m.validate();
        opt_->set_mask(std::move(m));
    }
    //! optimizer/summary.hpp's summary: (text, steps, groups, tensors); a group is
    //! (name, masked, policy, tensors, elements, kept or None), a tensor
    //! (name, group, elements, masked, kept or None).
    py::tuple summary(bool count_kept) const {
        const ct::optimizer_summary s = ct::summarize(opt_->core(), count_kept);
        std::ostringstream text;
        text << s;
        const auto kept = [](const std::optional<std::size_t>& k) { return k ? py::cast(*k) : py::none(); };
        py::list groups, tensors;
        for (const auto& g : s.groups) groups.append(py::make_tuple(g.name, g.masked, g.policy, g.tensors, g.elements, kept(g.kept)));
        for (const auto& t : s.tensors) tensors.append(py::make_tuple(t.name, t.group, t.elements, t.masked, kept(t.kept)));
        return py::make_tuple(text.str(), s.steps, groups, tensors);
    }
    //! A refreshed mask's last reselection: (selections, [(name, kept before,
    //! kept now, kept by both)]); None for other masks.
    py::object refresh_overlap() const {
        const auto* r = opt_->mask_policy().template target<ct::refreshed_fisher>();
        if (!r) return py::none();
        py::list out;
        for (const auto& o : r->last_overlap()) out.append(py::make_tuple(o.name, o.kept_before, o.kept_now, o.kept_both));
        return py::make_tuple(r->selections(), out);
    }

    //! The library's state file (step counters, masks, group options, state),
    //! in a LibTorch archive.
    py::bytes save() const {
        ::torch::serialize::OutputArchive archive;
        opt_->save(archive);
        std::ostringstream out;
        archive.save_to(out);
        return py::bytes(out.str());
    }
    //! Restores what save() wrote: hyperparameters, masks and state are the
    //! file's; nothing changes when it throws.
    void load(const std::string& bytes) {
        std::istringstream in(bytes);
        ctt::load_optimizer(*opt_, in, {.hyperparameters = ct::hyperparameter_source::saved});
    }
    //! Every group's option values as the C++ optimizer holds them.
    std::vector<std::vector<double>> values() const {
        std::vector<std::vector<double>> out;
        for (const auto& g : opt_->param_groups()) {
            const auto v = Rule::to_values(static_cast<const options_type&>(g.options()).to_core());
            out.emplace_back(v.begin(), v.end());
        }
        return out;
    }

    std::uint64_t step_count() const { return opt_->step_count(); }
    std::vector<std::string> names() const { return opt_->parameter_names(); }
    void set_threads(int n) { opt_->set_threads(n); }
    void force_aten_path(bool on) { opt_->force_aten_path(on); }
    //! Where each parameter (registration order) is stepped: "cpu", "cuda" (the
    //! fused kernels) or "aten" (the rule as ATen operations).
    std::vector<std::string> paths() const {
        std::vector<std::string> out;
        const auto& executor = opt_->core().executor();
        for (std::size_t i = 0; i < executor.tensor_count(); ++i) {
            switch (executor.where(i)) {
            case ctt::detail::placement::host: out.emplace_back("cpu"); break;
            case ctt::detail::placement::cuda: out.emplace_back("cuda"); break;
            case ctt::detail::placement::aten: out.emplace_back("aten"); break;
            }
        }
        return out;
    }

private:
    std::unique_ptr<optimizer_type> opt_;
};

template <class Rule>
void bind_optimizer(py::module_& m, const char* name) {
    using B = optimizer_binding<Rule>;
    py::class_<B>(m, name)
        .def(py::init<const std::vector<std::vector<std::string>>&, const std::vector<std::vector<at::Tensor>>&,
                      const std::vector<std::vector<double>>&, const std::vector<bool>&, const std::string&>())
        .def("state_bytes", &B::state_bytes)
        .def("set_values", &B::set_values)
        .def("add_group", &B::add_group)
        .def("step", &B::step)
        .def("set_dense", &B::set_dense)
        .def("set_bernoulli", &B::set_bernoulli)
        .def("set_fixed", &B::set_fixed)
        .def("set_magnitude", &B::set_magnitude)
        .def("set_refreshed_fisher", &B::set_refreshed_fisher)
        .def("summary", &B::summary)
        .def("refresh_overlap", &B::refresh_overlap)
        .def("save", &B::save)
        .def("load", &B::load)
        .def("values", &B::values)
        .def("step_count", &B::step_count)
        .def("names", &B::names)
        .def("set_threads", &B::set_threads)
        .def("force_aten_path", &B::force_aten_path)
        .def("paths", &B::paths)
        .def_property_readonly_static("option_count", [](py::object) { return Rule::option_count; })
        .def_static("validate", [](const std::vector<double>& values, std::size_t g) { (void)options_from<Rule>(values, g); });
}


} // namespace childtune_py
