// The optimizer step, LibTorch methods, on the same memory as step.cpp's (the
// problem's parameters and gradients wrapped as leaf tensors):
//
// - torch::optim::AdamW: the dense AdamW a C++ user has today;
// - the published Child-Tuning_F and Child-Tuning_D steps (ChildTuningAdamW of
//   the Child-Tuning repository) written op for op with ATen operations;
// - childtune's LibTorch adapter (childtune::torch::ChildTuningAdamW), to show it
//   adds nothing to the core's fused step.
//
// The one translation unit of the step benchmarks that includes LibTorch.

#include <childtune/torch.hpp>

#include "step_support.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <torch/ordered_dict.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace {

using bench::mode;

// The problem's memory as leaf tensors of the model's shapes, each with its
// gradient attached (no copy).
struct torch_parameters {
    std::vector<at::Tensor> params;
    ::torch::OrderedDict<std::string, at::Tensor> named;
};

torch_parameters wrap(bench::problem& prob, const bench::shape& s) {
    torch_parameters out;
    for (const auto& t : s.tensors) {
        at::Tensor p = at::from_blob(prob.param(t), t.dims, at::TensorOptions().dtype(at::kFloat));
        p.set_requires_grad(true);
        p.mutable_grad() = at::from_blob(prob.grad(t), t.dims, at::TensorOptions().dtype(at::kFloat));
        out.params.push_back(p);
        out.named.insert(t.name, p);
    }
    return out;
}

double torch_threads() { return static_cast<double>(at::get_num_threads()); }

// Every method runs on the same number of threads: OpenMP's (OMP_NUM_THREADS or
// the core count). LibTorch 1.13 picks its own count on first use (its guess of
// the physical cores; 1 on some VMs) and sets OpenMP's to it, which would slow
// the torch-free methods and childtune's adapter (its default follows torch's)
// too. Returns what LibTorch would have used, for the context.
std::string same_threads_for_all() {
    const auto wanted = static_cast<int>(childtune::default_backend{}.concurrency());
    const int torch_default = at::get_num_threads();
    at::set_num_threads(wanted);
    return std::to_string(at::get_num_threads()) + " (LibTorch's default here: " + std::to_string(torch_default) + ")";
}

// torch::optim::AdamW (decoupled decay, no amsgrad), dense.
void torch_adamw(benchmark::State& state, const bench::shape& s) {
    auto& prob = bench::problem_for(s);
    const std::size_t base = bench::begin_memory();
    auto tp = wrap(prob, s);
    ::torch::optim::AdamW opt(tp.params, ::torch::optim::AdamWOptions(bench::learning_rate)
                                             .eps(bench::adam_eps)
                                             .weight_decay(bench::weight_decay));
    opt.step(); // allocates the state outside the timed loop
    bench::time_steps(state, [&] { opt.step(); });
    bench::report(state, s, 28.0, base, torch_threads());
}

// ChildTuningAdamW.step() of the published Child-Tuning code, op for op:
//
//   CT_F: grad_mask = Bernoulli(grad.new_full(grad.size(), p)).sample()
//         grad *= grad_mask; grad /= p
//   CT_D: grad *= gradient_mask[p]          (a float 0/1 tensor per masked parameter)
//   then  exp_avg.mul_(b1).add_(grad, alpha=1-b1)
//         exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)
//         denom = exp_avg_sq.sqrt().add_(eps)
//         step_size = lr * sqrt(1 - b2^t) / (1 - b1^t)
//         p.addcdiv_(exp_avg, denom, value=-step_size)
//         p.add_(p, alpha=-lr*wd)
class reference_child_tuning_adamw {
public:
    reference_child_tuning_adamw(std::vector<at::Tensor> params, mode m, std::vector<at::Tensor> masks)
        : params_(std::move(params)), masks_(std::move(masks)), mode_(m), state_(params_.size()) {}

    void step() {
        ::torch::NoGradGuard no_grad;
        const double b1 = 0.9, b2 = 0.999, lr = bench::learning_rate, p_keep = bench::keep_probability;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            at::Tensor& p = params_[i];
            at::Tensor grad = p.grad();
            if (mode_ == mode::ct_d) {
                if (masks_[i].defined()) grad.mul_(masks_[i]);
            } else if (mode_ == mode::ct_f) {
                at::Tensor grad_mask = at::bernoulli(grad.new_full(grad.sizes(), p_keep));
                grad.mul_(grad_mask);
                grad.div_(p_keep);
            }
            auto& st = state_[i];
            if (!st.exp_avg.defined()) {
                st.exp_avg = at::zeros_like(p);
                st.exp_avg_sq = at::zeros_like(p);
            }
            ++st.step;
            st.exp_avg.mul_(b1).add_(grad, 1 - b1);
            st.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2);
            at::Tensor denom = st.exp_avg_sq.sqrt().add_(bench::adam_eps);
            const auto t = static_cast<double>(st.step);
            const double step_size = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
            p.addcdiv_(st.exp_avg, denom, -step_size);
            p.add_(p, -lr * bench::weight_decay);
        }
    }

private:
    struct param_state {
        at::Tensor exp_avg, exp_avg_sq;
        std::int64_t step = 0;
    };
    std::vector<at::Tensor> params_;
    std::vector<at::Tensor> masks_; // undefined where a parameter is not masked
    mode mode_;
    std::vector<param_state> state_;
};

// The reference's CT_D mask: a float 0/1 tensor per masked parameter, from the
// same bits the fused step reads.
std::vector<at::Tensor> float_masks(bench::problem& prob, const bench::shape& s) {
    const auto& bits = prob.fisher_masks(bench::keep_probability);
    std::vector<at::Tensor> masks;
    for (const auto& t : s.tensors) {
        if (!bench::masked_in(mode::ct_d, t)) {
            masks.emplace_back();
            continue;
        }
        at::Tensor m = at::empty(t.dims, at::TensorOptions().dtype(at::kFloat));
        float* out = m.data_ptr<float>();
        const auto words = bits.find(t.name)->words();
        const std::size_t n = t.size;
        childtune::default_backend{}.parallel_for(words.size(), [&](std::size_t w) {
            for (std::size_t i = 64 * w; i < std::min(n, 64 * w + 64); ++i) out[i] = static_cast<float>((words[w] >> (i & 63)) & 1u);
        });
        masks.push_back(std::move(m));
    }
    return masks;
}

void reference_step(benchmark::State& state, const bench::shape& s, mode m) {
    auto& prob = bench::problem_for(s, m);
    const std::size_t base = bench::begin_memory();
    {
        auto tp = wrap(prob, s);
        reference_child_tuning_adamw opt(tp.params, m, m == mode::ct_d ? float_masks(prob, s) : std::vector<at::Tensor>(s.tensors.size()));
        opt.step();
        // CT_F rescales the gradients in place: a fresh gradient before every step
        // (as backward() writes one), restored untimed. CT_D's 0/1 product is idempotent.
        if (m == mode::ct_f) bench::time_steps(state, [&] { opt.step(); }, [&] { prob.refill_grad(); });
        else bench::time_steps(state, [&] { opt.step(); });
        bench::report(state, s, 28.0, base, torch_threads());
    }
    prob.refill_grad();
}

void reference_ct_f(benchmark::State& st, const bench::shape& s) { reference_step(st, s, mode::ct_f); }
void reference_ct_d(benchmark::State& st, const bench::shape& s) { reference_step(st, s, mode::ct_d); }

// childtune::torch::ChildTuningAdamW on the same leaf tensors (fused CPU path).
void adapter_step(benchmark::State& state, const bench::shape& s, mode m) {
    auto& prob = bench::problem_for(s, m);
    const std::size_t base = bench::begin_memory();
    auto tp = wrap(prob, s);
    const auto core = bench::adamw_options(m);
    auto options = childtune::torch::ChildTuningAdamWOptions(core.lr).eps(core.eps).weight_decay(core.weight_decay).flavour(core.flavour);
    childtune::torch::ChildTuningAdamW opt(
        tp.named, options, bench::mask_for(m, prob),
        m == mode::ct_d ? childtune::torch::name_contains("encoder.layer") : childtune::torch::every_name(),
        {.on_nonfinite = childtune::nonfinite_policy::unchecked});
    opt.step();
    bench::time_steps(state, [&] { opt.step(); });
    bench::report(state, s, 28.0, base, bench::core_threads());
}

void adapter_dense(benchmark::State& st, const bench::shape& s) { adapter_step(st, s, mode::dense); }
void adapter_ct_f(benchmark::State& st, const bench::shape& s) { adapter_step(st, s, mode::ct_f); }
void adapter_ct_d(benchmark::State& st, const bench::shape& s) { adapter_step(st, s, mode::ct_d); }

// ---- the peers compute what childtune computes ------------------------------------------------

// Steps two copies of a small model-shaped problem three times, one with a peer
// and one with childtune's core, and compares the parameters.
template <class Peer, class Core>
std::string same_update(Peer peer_steps, Core core_steps) {
    const bench::shape s = bench::model_shape(32, 2);
    bench::problem a(s), b(s);
    peer_steps(a, s);
    core_steps(b, s);
    double worst = 0;
    for (const auto& t : s.tensors)
        for (std::size_t i = 0; i < t.size; ++i) {
            const double x = a.param(t)[i], y = b.param(t)[i];
            worst = std::max(worst, std::abs(x - y) / std::max(1e-30, std::abs(y)));
        }
    return worst <= 1e-6 ? std::string() : "parameters differ by up to " + std::to_string(worst) + " (relative)";
}

void core_steps(bench::problem& prob, const bench::shape& s, mode m, int steps) {
    // allow_empty: a flat shape has no tensor in the masked group "other" (Child-Tuning_F).
    childtune::optimizer<childtune::adamw> opt(bench::mask_for(m, prob),
                                               {.on_nonfinite = childtune::nonfinite_policy::unchecked, .allow_empty = true});
    const auto encoder = opt.add_group("encoder", bench::adamw_options(m), true);
    const auto rest = opt.add_group("other", bench::adamw_options(m), m == mode::ct_f);
    for (const auto& t : s.tensors)
        opt.add_parameter<float>(t.encoder ? encoder : rest, t.name, {prob.param(t), t.size}, {prob.grad(t), t.size});
    for (int i = 0; i < steps; ++i) opt.step();
}

std::string check_dense() {
    return same_update(
        [](bench::problem& prob, const bench::shape& s) {
            auto tp = wrap(prob, s);
            ::torch::optim::AdamW opt(tp.params, ::torch::optim::AdamWOptions(bench::learning_rate)
                                                     .eps(bench::adam_eps)
                                                     .weight_decay(bench::weight_decay));
            for (int i = 0; i < 3; ++i) opt.step();
        },
        [](bench::problem& prob, const bench::shape& s) { core_steps(prob, s, mode::dense, 3); });
}

std::string check_ct_d() {
    return same_update(
        [](bench::problem& prob, const bench::shape& s) {
            auto tp = wrap(prob, s);
            reference_child_tuning_adamw opt(tp.params, mode::ct_d, float_masks(prob, s));
            for (int i = 0; i < 3; ++i) opt.step();
        },
        [](bench::problem& prob, const bench::shape& s) { core_steps(prob, s, mode::ct_d, 3); });
}

using bench::add_method;
constexpr unsigned everywhere = bench::flat | bench::model;
const add_method m_torch{{20, "torch/adamw", &torch_adamw, everywhere}};
const add_method m_ref_f{{21, "reference/ct_f", &reference_ct_f, everywhere}};
const add_method m_ref_d{{22, "reference/ct_d", &reference_ct_d, everywhere}};
const add_method m_adapter_dense{{40, "childtune_torch/dense", &adapter_dense, everywhere}};
const add_method m_adapter_ct_f{{41, "childtune_torch/ct_f", &adapter_ct_f, everywhere}};
const add_method m_adapter_ct_d{{42, "childtune_torch/ct_d", &adapter_ct_d, everywhere}};
const bench::add_check k_dense{"torch/adamw vs childtune/dense", &check_dense};
const bench::add_check k_ct_d{"reference/ct_d vs childtune/ct_d", &check_ct_d};
const bench::add_context c_torch{"libtorch", TORCH_VERSION};
const bench::add_context c_torch_threads{"libtorch_threads", same_threads_for_all()};

} // namespace
