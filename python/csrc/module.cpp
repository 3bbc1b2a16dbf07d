// The childtune._C extension: the library's LibTorch optimizer
// (childtune::torch::child_tuning_optimizer over the core registry and its
// executors) and its Fisher accumulator, bound with pybind11. The Python
// package (python/childtune/) is the torch.optim.Optimizer face; every step,
// mask decision, state file and Fisher score is computed here, by the library.
//
// Why a pybind11 module and not a torch custom op (TORCH_LIBRARY): the optimizer
// is a long-lived object holding the registry (groups, names, stable tensor keys,
// step counters, masks) and the state tensors; a custom op is a stateless tensor
// function meant for the dispatcher and tracing (torch.jit / torch.compile), so
// it would have to pass all of that state in and out on every call, and its
// schema language has no type for a mask set or a state file. pybind11 binds the
// C++ object as it is, and torch/extension.h converts at::Tensor to and from
// torch.Tensor without copies on torch 1.13 and 2.x alike.

#include <torch/extension.h>

#include <childtune/error.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/torch/archive.hpp>
#include <childtune/torch/optimizer.hpp>
#include <childtune/torch/options.hpp>
#include <childtune/torch/tensor.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;
namespace ct = childtune;
namespace ctt = childtune::torch;

namespace {

std::string group_name(std::size_t g) { return "param_group" + std::to_string(g); }

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
ct::bit_mask bits_of(const std::string& name, const at::Tensor& mask) {
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

at::Tensor bool_tensor_of(const ct::bit_mask& m) {
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
                      const std::vector<std::vector<double>>& values, const std::vector<bool>& masked) {
        if (names.size() != params.size() || values.size() != params.size() || masked.size() != params.size())
            ct::detail::fail("optimizer: names, parameters, option values and masked flags differ in group count");
        std::vector<ctt::named_param_group<options_type>> groups;
        for (std::size_t g = 0; g < params.size(); ++g)
            groups.push_back({names[g], params[g], options_type(options_from<Rule>(values[g], g), masked[g])});
        opt_ = std::make_unique<optimizer_type>(std::move(groups));
    }

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

private:
    std::unique_ptr<optimizer_type> opt_;
};

template <class Rule>
void bind_optimizer(py::module_& m, const char* name) {
    using B = optimizer_binding<Rule>;
    py::class_<B>(m, name)
        .def(py::init<const std::vector<std::vector<std::string>>&, const std::vector<std::vector<at::Tensor>>&,
                      const std::vector<std::vector<double>>&, const std::vector<bool>&>())
        .def("set_values", &B::set_values)
        .def("add_group", &B::add_group)
        .def("step", &B::step)
        .def("set_dense", &B::set_dense)
        .def("set_bernoulli", &B::set_bernoulli)
        .def("set_fixed", &B::set_fixed)
        .def("save", &B::save)
        .def("load", &B::load)
        .def("values", &B::values)
        .def("step_count", &B::step_count)
        .def("names", &B::names)
        .def("set_threads", &B::set_threads)
        .def("force_aten_path", &B::force_aten_path)
        .def_property_readonly_static("option_count", [](py::object) { return Rule::option_count; })
        .def_static("validate", [](const std::vector<double>& values, std::size_t g) { (void)options_from<Rule>(values, g); });
}

//! Fisher scores (mask/fisher.hpp) accumulated from torch gradients, and the
//! Child-Tuning_D selection (select/top_p.hpp).
class fisher_binding {
public:
    fisher_binding(double max_grad_norm, std::size_t num_batches)
        : acc_({.max_grad_norm = max_grad_norm, .num_batches = num_batches}) {}
    void add_tensor(const std::string& name, std::size_t size) { acc_.add_tensor(name, size); }
    void accumulate(const std::string& name, const at::Tensor& grad) {
        if (grad.is_sparse()) ct::detail::fail("calculate_fisher: the gradient of '" + name + "' is sparse");
        const at::Tensor host = grad.detach().to(at::kCPU).contiguous();
        const auto type = ctt::element_type(host.scalar_type());
        if (!type) ct::detail::fail("calculate_fisher: the gradient of '" + name + "' is " + ctt::detail::describe(host));
        switch (*type) {
        case ct::dtype::float32: acc_.accumulate(name, ctt::detail::view_of<const float>(host)); break;
        case ct::dtype::float64: acc_.accumulate(name, ctt::detail::view_of<const double>(host)); break;
        case ct::dtype::bfloat16: acc_.accumulate(name, ctt::detail::view_of<const ct::bfloat16>(host)); break;
        case ct::dtype::float16: acc_.accumulate(name, ctt::detail::view_of<const ct::float16>(host)); break;
        }
    }
    void end_batch() { acc_.end_batch(); }
    std::size_t batches() const { return acc_.batches(); }
    at::Tensor scores(const std::string& name) const {
        const auto s = acc_.scores(name);
        return at::tensor(at::ArrayRef<float>(s.data(), s.size()), at::kFloat);
    }
    //! (name -> flat bool mask, threshold, kept) for keep fraction p.
    py::tuple select(double p, const std::string& rule) const {
        ct::selection_rule r;
        if (rule == "percentile") r = ct::selection_rule::percentile;
        else if (rule == "exact_count") r = ct::selection_rule::exact_count;
        else ct::detail::fail("calculate_fisher: rule '" + rule + "' is neither 'percentile' nor 'exact_count'");
        const auto top = acc_.select(p, r);
        py::dict masks;
        for (const auto& e : top.masks.entries()) masks[py::str(e.name)] = bool_tensor_of(e.mask);
        return py::make_tuple(masks, top.threshold, top.kept);
    }

private:
    ct::fisher_accumulator<float> acc_;
};

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "childtune's C++ Child-Tuning optimizers and Fisher selection (use the childtune package, not this module)";
    py::register_exception<ct::error>(m, "Error", PyExc_ValueError);
    bind_optimizer<ct::adamw>(m, "AdamWCore");
    bind_optimizer<ct::adam>(m, "AdamCore");
    bind_optimizer<ct::sgd>(m, "SGDCore");
    bind_optimizer<ct::lion>(m, "LionCore");
    bind_optimizer<ct::lamb>(m, "LAMBCore");
    py::class_<fisher_binding>(m, "Fisher")
        .def(py::init<double, std::size_t>())
        .def("add_tensor", &fisher_binding::add_tensor)
        .def("accumulate", &fisher_binding::accumulate)
        .def("end_batch", &fisher_binding::end_batch)
        .def("batches", &fisher_binding::batches)
        .def("scores", &fisher_binding::scores)
        .def("select", &fisher_binding::select);
    m.def("stable_tensor_key", [](const std::string& name) { return ct::stable_tensor_key(name); });
#ifdef CHILDTUNE_PY_CUDA
    m.attr("cuda_kernels") = true;
#else
    m.attr("cuda_kernels") = false;
#endif
}
