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

#include "bindings.hpp"

#include <childtune/exec/cpu_isa.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>

#include <cstddef>
#include <string>

namespace childtune_py {
void bind_more_rules(py::module_& m); // rules.cpp

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

} // namespace childtune_py

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    using namespace childtune_py;
    m.doc() = "childtune's C++ Child-Tuning optimizers and Fisher selection (use the childtune package, not this module)";
    py::register_exception<ct::error>(m, "Error", PyExc_ValueError);
    bind_optimizer<ct::adamw>(m, "AdamWCore");
    bind_optimizer<ct::adam>(m, "AdamCore");
    bind_more_rules(m);
    py::class_<fisher_binding>(m, "Fisher")
        .def(py::init<double, std::size_t>())
        .def("add_tensor", &fisher_binding::add_tensor)
        .def("accumulate", &fisher_binding::accumulate)
        .def("end_batch", &fisher_binding::end_batch)
        .def("batches", &fisher_binding::batches)
        .def("scores", &fisher_binding::scores)
        .def("select", &fisher_binding::select);
    m.def("stable_tensor_key", [](const std::string& name) { return ct::stable_tensor_key(name); });
    m.def("cpu_kernel_isa", [] { return std::string(ct::cpu_isa_name(ct::cpu_kernel_isa())); });
#ifdef CHILDTUNE_PY_CUDA
    m.attr("cuda_kernels") = true;
#else
    m.attr("cuda_kernels") = false;
#endif
}
