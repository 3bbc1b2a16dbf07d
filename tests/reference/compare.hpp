#pragma once
// Runs childtune::optimizer<Rule> and a naive reference side by side for many
// steps over tensors of ragged sizes in a masked and a dense group, and checks
// every parameter after every step.

#include "reference/naive_optimizers.hpp"

#include <childtune/optimizer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace reference {

struct tensor_spec {
    std::string name;
    std::size_t size;
    bool masked;
};

inline const std::vector<tensor_spec>& ragged_tensors() {
    static const std::vector<tensor_spec> specs = {
        {"layer.0.weight", 1000, true}, {"layer.0.bias", 77, true}, {"layer.1.weight", 64, true},
        {"layer.1.bias", 1, true},      {"head.weight", 33, false}};
    return specs;
}

inline childtune::mask_set random_fixed_masks(double p, unsigned seed) {
    std::mt19937 rng(seed);
    std::bernoulli_distribution keep(p);
    childtune::mask_set set;
    for (const auto& t : ragged_tensors()) {
        if (!t.masked) continue;
        childtune::bit_mask m(t.size);
        for (std::size_t i = 0; i < t.size; ++i) m.set(i, keep(rng));
        set.add(t.name, std::move(m));
    }
    return set;
}

// Keep decisions of tensor `spec` at step `step`, read through the scalar
// definition (keep(i)), and the probability kept gradients are divided by.
inline std::vector<bool> keep_of(const childtune::mask_mode& mode, const tensor_spec& spec, std::uint64_t step,
                                 double& keep_p) {
    std::vector<bool> keep(spec.size, true);
    keep_p = 1.0;
    if (!spec.masked) return keep;
    if (const auto* b = std::get_if<childtune::bernoulli>(&mode)) {
        const auto view = b->view(childtune::stable_tensor_key(spec.name), step);
        for (std::size_t i = 0; i < spec.size; ++i) keep[i] = view.keep(i);
        // The documented effective p: version 2 rounds p to units of 2^-16.
        keep_p = b->version == 2 ? std::nearbyint(b->p * 65536.0) / 65536.0 : b->p;
    } else if (const auto* f = std::get_if<childtune::fixed>(&mode)) {
        const auto* m = f->masks.find(spec.name);
        for (std::size_t i = 0; i < spec.size; ++i) keep[i] = m->test(i);
    }
    return keep;
}

template <class S>
void require_close(const std::vector<S>& got, const std::vector<S>& want, double rel, const std::string& what) {
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double g = got[i], w = want[i];
        const double tol = rel * std::max(std::abs(w), 1e-3);
        if (!(std::abs(g - w) <= tol)) {
            INFO(what << "[" << i << "]: childtune " << g << " reference " << w);
            REQUIRE(std::abs(g - w) <= tol);
        }
    }
}

// Rule: childtune rule; Ref: reference type with apply(); make_ref builds one per tensor.
template <class Rule, class S, class Ref, class MakeRef>
void compare_with_reference(const typename Rule::options& options, MakeRef make_ref, const childtune::mask_mode& mode,
                            childtune::masking_options masking, int steps) {
    childtune::optimizer<Rule> opt(mode, {masking, childtune::nonfinite_policy::raise, childtune::state_precision::automatic});
    const auto encoder = opt.add_group("encoder", options, true);
    const auto head = opt.add_group("head", options, false);
    std::mt19937 rng(1234);
    std::normal_distribution<double> normal(0.0, 1.0);

    const auto& specs = ragged_tensors();
    std::vector<std::vector<S>> params, grads, ref_params;
    std::vector<Ref> refs;
    for (const auto& s : specs) {
        std::vector<S> p(s.size);
        for (auto& x : p) x = static_cast<S>(normal(rng));
        params.push_back(p);
        ref_params.push_back(p);
        grads.emplace_back(s.size);
        refs.push_back(make_ref());
    }
    for (std::size_t i = 0; i < specs.size(); ++i)
        opt.add_parameter(specs[i].masked ? encoder : head, specs[i].name, params[i], grads[i]);

    const reference::masking ref_masking{masking.target == childtune::mask_target::update, masking.decay_masked};
    const double rel = sizeof(S) == 4 ? 2e-5 : 1e-12;
    for (int t = 0; t < steps; ++t) {
        for (auto& g : grads)
            for (auto& x : g) x = static_cast<S>(0.1 * normal(rng));
        for (std::size_t i = 0; i < specs.size(); ++i) {
            double keep_p;
            const auto keep = keep_of(mode, specs[i], static_cast<std::uint64_t>(t), keep_p);
            refs[i].apply(ref_params[i], grads[i], keep, keep_p, ref_masking);
        }
        REQUIRE(opt.step().applied);
        for (std::size_t i = 0; i < specs.size(); ++i)
            require_close(params[i], ref_params[i], rel, specs[i].name + " after step " + std::to_string(t + 1));
    }
}

inline std::vector<childtune::mask_mode> all_mask_modes() {
    return {childtune::dense{}, childtune::bernoulli{0.3, 99}, childtune::bernoulli{1.0, 5},
            childtune::fixed{random_fixed_masks(0.4, 3)}};
}

inline std::vector<childtune::masking_options> all_maskings() {
    return {{childtune::mask_target::gradient, true},
            {childtune::mask_target::gradient, false},
            {childtune::mask_target::update, true},
            {childtune::mask_target::update, false}};
}

} // namespace reference
