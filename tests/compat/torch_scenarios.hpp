#pragma once
// LibTorch-adapter runs recorded with childtune 0.1 and replayed by later
// versions: ChildTuningAdamW (legacy flavour) with Child-Tuning_F and _D on the
// fused CPU path and on the ATen path (force_aten_path), and ChildTuningSGD with
// momentum. The archive written by torch::save after `saved_step` steps is
// committed (tests/data/v0.1/torch_*.pt); the trajectory holds a hash of every
// parameter bit after each step.

#include "compat/scenarios.hpp"

#include <childtune/torch.hpp>

#include <torch/serialize.h>
#include <torch/types.h>

#include <cstring>
#include <string>
#include <vector>

namespace compat {

struct torch_model {
    ::torch::OrderedDict<std::string, at::Tensor> named;
    torch_model() {
        const std::vector<std::pair<std::string, std::vector<std::int64_t>>> shapes = {
            {"embed.weight", {10, 7}}, {"layer.0.weight", {33, 10}}, {"layer.0.bias", {33}}, {"head.weight", {3, 33}}};
        std::uint64_t k = 0;
        for (const auto& [name, shape] : shapes) {
            at::Tensor p = at::empty(shape, at::kFloat);
            auto* d = p.data_ptr<float>();
            for (std::int64_t i = 0; i < p.numel(); ++i) d[i] = static_cast<float>(noise(7000 + k, static_cast<std::uint64_t>(i)));
            p.set_requires_grad(true);
            named.insert(name, p);
            ++k;
        }
    }
    void set_gradients(int step) {
        std::uint64_t k = 0;
        for (auto& item : named) {
            at::Tensor g = at::empty_like(item.value());
            auto* d = g.data_ptr<float>();
            for (std::int64_t i = 0; i < g.numel(); ++i)
                d[i] = static_cast<float>(0.1 * noise(8000 + 100 * static_cast<std::uint64_t>(step) + k, static_cast<std::uint64_t>(i)));
            item.value().mutable_grad() = g;
            ++k;
        }
    }
    std::string bytes() const {
        std::string out;
        for (const auto& item : named)
            out.append(static_cast<const char*>(item.value().data_ptr()), static_cast<std::size_t>(item.value().numel()) * 4);
        return out;
    }
};

struct torch_scenario {
    std::string name;
    bool aten;
    int kind; //!< 0 AdamW CT_F, 1 AdamW CT_D, 2 SGD CT_F
};

inline std::vector<torch_scenario> torch_scenarios() {
    return {{"torch_adamw_ct_f", false, 0}, {"torch_adamw_ct_d", false, 1}, {"torch_sgd_ct_f", false, 2},
            {"torch_aten_adamw_ct_f", true, 0}, {"torch_aten_adamw_ct_d", true, 1}};
}

inline childtune::mask_set torch_masks(const torch_model& m) {
    childtune::mask_set set;
    std::uint64_t k = 0;
    for (const auto& item : m.named) {
        if (item.key().find("layer") != std::string::npos) {
            childtune::bit_mask b(static_cast<std::size_t>(item.value().numel()));
            for (std::size_t i = 0; i < b.size(); ++i) b.set(i, noise(9000 + k, i) < -0.4);
            set.add(item.key(), std::move(b));
        }
        ++k;
    }
    return set;
}

//! Runs a scenario `steps` steps, or (with `from_archive`) resumes the archive
//! after `saved_step` steps; hashes of the parameters after each step run.
template <class Optimizer, class Options>
void run_torch(const torch_scenario& s, const Options& options, std::vector<std::string>& params,
               const std::string& save_to, const std::string& from_archive) {
    const auto make = [&](torch_model& m) {
        const childtune::mask_mode mode = s.kind == 1 ? childtune::mask_mode{childtune::fixed{torch_masks(m)}}
                                                      : childtune::mask_mode{childtune::bernoulli{0.4, 77, 1}};
        auto opt = std::make_unique<Optimizer>(m.named, options, mode, childtune::torch::name_contains("layer"));
        if (s.aten) opt->force_aten_path(true);
        return opt;
    };
    torch_model m;
    auto opt = make(m);
    int first = 0;
    if (!from_archive.empty()) {
        torch_model scratch_model;
        auto scratch = make(scratch_model);
        for (int t = 0; t < saved_step; ++t) {
            scratch_model.set_gradients(t);
            scratch->step();
        }
        ::torch::NoGradGuard no_grad;
        for (auto& item : m.named) item.value().copy_(scratch_model.named[item.key()]);
        ::torch::load(*opt, from_archive);
        first = saved_step;
    }
    for (int t = first; t < steps; ++t) {
        m.set_gradients(t);
        opt->step();
        params.push_back(hash(m.bytes()));
        if (t + 1 == saved_step && !save_to.empty()) ::torch::save(*opt, save_to);
    }
}

inline void run_torch_scenario(const torch_scenario& s, std::vector<std::string>& params, const std::string& save_to,
                               const std::string& from_archive) {
    using namespace childtune::torch;
    if (s.kind == 2)
        run_torch<ChildTuningSGD>(s, ChildTuningSGDOptions(0.05).momentum(0.9), params, save_to, from_archive);
    else
        run_torch<ChildTuningAdamW>(s, ChildTuningAdamWOptions(1e-2).weight_decay(0.01).eps(1e-6).flavour(childtune::adamw_flavour::legacy),
                                    params, save_to, from_archive);
}

} // namespace compat
