#pragma once
//! \file
//! Per-group options of the LibTorch optimizers, in LibTorch's own style
//! (chainable `TORCH_ARG` accessors, `OptimizerCloneableOptions`), so schedulers and
//! code written for `torch::optim::AdamW` work unchanged. `masked` says whether the
//! group is masked by the optimizer's Child-Tuning mode.
//!
//! Each options type converts to and from the core rule's options; the core
//! validates them (childtune::error naming the group).

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace childtune::torch {

//! What the three options types share: lr access for schedulers, serialization
//! (the core rule's option values plus `masked`, so a new rule option needs no new
//! archive code) and comparison.
template <class Derived, class Rule>
struct child_tuning_options : public ::torch::optim::OptimizerCloneableOptions<Derived> {
    //! The group's learning rate (what torch's LR schedulers read).
    double get_lr() const override { return self().lr(); }
    //! Sets the group's learning rate (what torch's LR schedulers write).
    void set_lr(const double value) override { self().lr(value); }
    //! Writes the rule's option values and `masked` into a torch archive.
    void serialize(::torch::serialize::OutputArchive& archive) const override {
        const auto values = Rule::to_values(self().to_core());
        archive.write("childtune_options", c10::IValue(std::vector<double>(values.begin(), values.end())));
        archive.write("masked", c10::IValue(self().masked()));
    }
    //! Reads what serialize(OutputArchive&) wrote; throws childtune::error when the
    //! number of values does not match the rule.
    void serialize(::torch::serialize::InputArchive& archive) override {
        c10::IValue values, masked;
        archive.read("childtune_options", values);
        archive.read("masked", masked);
        const auto list = values.toDoubleVector();
        std::array<double, Rule::option_count> v{};
        if (list.size() != v.size())
            childtune::detail::fail("options archive: " + std::to_string(list.size()) + " values for '" +
                                    std::string(Rule::name) + "', expected " + std::to_string(v.size()));
        std::copy(list.begin(), list.end(), v.begin());
        self() = Derived::from_core(Rule::from_values(v), masked.toBool());
    }
    //! Equal when the core options and `masked` are.
    friend bool operator==(const Derived& a, const Derived& b) {
        return a.to_core() == b.to_core() && a.masked() == b.masked();
    }

private:
    const Derived& self() const { return static_cast<const Derived&>(*this); }
    Derived& self() { return static_cast<Derived&>(*this); }
};


//! Options of ChildTuningAdamW: torch's AdamWOptions plus the flavour (the legacy
//! HF-style AdamW of the published Child-Tuning optimizer, or torch's), bias
//! correction and whether the group is masked.
struct ChildTuningAdamWOptions : public child_tuning_options<ChildTuningAdamWOptions, adamw> {
    //! (beta1, beta2), as torch's AdamWOptions.
    using betas_t = std::tuple<double, double>;
    //! Options with learning rate `lr` (implicit, as torch's AdamWOptions).
    ChildTuningAdamWOptions(double lr = 1e-3) : lr_(lr) {} // NOLINT(google-explicit-constructor): as torch's
    //! Learning rate.
    TORCH_ARG(double, lr) = 1e-3;
    //! Decay rates of the two moments.
    TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
    //! Added to the denominator.
    TORCH_ARG(double, eps) = 1e-8;
    //! Decoupled weight decay (torch's default, 1e-2).
    TORCH_ARG(double, weight_decay) = 1e-2;
    //! torch (decay first) or legacy (the published Child-Tuning AdamW).
    TORCH_ARG(adamw_flavour, flavour) = adamw_flavour::torch;
    //! Bias correction of the moments (the legacy optimizer lets users turn it off).
    TORCH_ARG(bool, correct_bias) = true;
    //! Whether the group is masked (false: trained densely).
    TORCH_ARG(bool, masked) = true;

public:
    //! The core rule these options configure.
    using rule_type = adamw;
    //! The options as the core rule's.
    adamw::options to_core() const {
        return {lr(), std::get<0>(betas()), std::get<1>(betas()), eps(), weight_decay(), flavour(), correct_bias()};
    }
    //! Options from the core rule's and the masked flag.
    static ChildTuningAdamWOptions from_core(const adamw::options& o, bool is_masked) {
        ChildTuningAdamWOptions r(o.lr);
        r.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay).flavour(o.flavour).correct_bias(o.correct_bias);
        r.masked(is_masked);
        return r;
    }
};

//! Options of ChildTuningAdam: torch's AdamOptions (L2 weight decay) plus `masked`.
struct ChildTuningAdamOptions : public child_tuning_options<ChildTuningAdamOptions, adam> {
    //! (beta1, beta2), as torch's AdamOptions.
    using betas_t = std::tuple<double, double>;
    //! Options with learning rate `lr` (implicit, as torch's AdamOptions).
    ChildTuningAdamOptions(double lr = 1e-3) : lr_(lr) {} // NOLINT(google-explicit-constructor)
    //! Learning rate.
    TORCH_ARG(double, lr) = 1e-3;
    //! Decay rates of the two moments.
    TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
    //! Added to the denominator.
    TORCH_ARG(double, eps) = 1e-8;
    //! L2 weight decay, added to the masked gradient.
    TORCH_ARG(double, weight_decay) = 0;
    //! Whether the group is masked (false: trained densely).
    TORCH_ARG(bool, masked) = true;

public:
    //! The core rule these options configure.
    using rule_type = adam;
    //! The options as the core rule's.
    adam::options to_core() const { return {lr(), std::get<0>(betas()), std::get<1>(betas()), eps(), weight_decay()}; }
    //! Options from the core rule's and the masked flag.
    static ChildTuningAdamOptions from_core(const adam::options& o, bool is_masked) {
        ChildTuningAdamOptions r(o.lr);
        r.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
        r.masked(is_masked);
        return r;
    }
};

//! Options of ChildTuningSGD: torch's SGDOptions plus `masked`.
struct ChildTuningSGDOptions : public child_tuning_options<ChildTuningSGDOptions, sgd> {
    //! Options with learning rate `lr` (implicit; as torch's SGDOptions, lr has no default).
    ChildTuningSGDOptions(double lr) : lr_(lr) {} // NOLINT(google-explicit-constructor)
    //! Learning rate.
    TORCH_ARG(double, lr);
    //! Momentum factor; 0 keeps no momentum buffer.
    TORCH_ARG(double, momentum) = 0;
    //! Dampening of the gradient's share in the momentum buffer.
    TORCH_ARG(double, dampening) = 0;
    //! L2 weight decay, added to the masked gradient.
    TORCH_ARG(double, weight_decay) = 0;
    //! Nesterov momentum (needs momentum > 0 and dampening = 0).
    TORCH_ARG(bool, nesterov) = false;
    //! Whether the group is masked (false: trained densely).
    TORCH_ARG(bool, masked) = true;

public:
    //! The core rule these options configure.
    using rule_type = sgd;
    //! The options as the core rule's.
    sgd::options to_core() const { return {lr(), momentum(), dampening(), weight_decay(), nesterov()}; }
    //! Options from the core rule's and the masked flag.
    static ChildTuningSGDOptions from_core(const sgd::options& o, bool is_masked) {
        ChildTuningSGDOptions r(o.lr);
        r.momentum(o.momentum).dampening(o.dampening).weight_decay(o.weight_decay).nesterov(o.nesterov);
        r.masked(is_masked);
        return r;
    }
};

//! Options of the LibTorch optimizer over any update rule (a rule of the user's,
//! Lion, LAMB...): the rule's own options plus `masked`, so a new rule needs no
//! options type here. `child_tuning_optimizer<rule_options<childtune::lion>>`
//! is a Child-Tuning Lion for LibTorch; schedulers set `lr`.
template <update_rule Rule>
struct rule_options : public child_tuning_options<rule_options<Rule>, Rule> {
    //! The core rule these options configure.
    using rule_type = Rule;
    //! The rule's options `o` for a masked (or, with `is_masked` false, dense) group.
    rule_options(typename Rule::options o = {}, bool is_masked = true) // NOLINT(google-explicit-constructor)
        : options_(o), masked_(is_masked) {}

    //! Learning rate.
    double lr() const { return options_.lr; }
    //! Sets the learning rate (schedulers call it through set_lr).
    rule_options& lr(double value) {
        options_.lr = value;
        return *this;
    }
    //! Whether the group is masked (false: trained densely).
    bool masked() const { return masked_; }
    //! Sets whether the group is masked.
    rule_options& masked(bool value) {
        masked_ = value;
        return *this;
    }
    //! The rule's options, for everything but lr.
    typename Rule::options& rule() { return options_; }

    //! The rule's options.
    typename Rule::options to_core() const { return options_; }
    //! Options from the rule's and the masked flag.
    static rule_options from_core(const typename Rule::options& o, bool is_masked) { return {o, is_masked}; }

private:
    typename Rule::options options_;
    bool masked_;
};

} // namespace childtune::torch
