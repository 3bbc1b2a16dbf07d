#pragma once
//! \file
//! Per-group options of the LibTorch optimizers, in LibTorch's own style
//! (chainable `TORCH_ARG` accessors, `OptimizerCloneableOptions`), so schedulers and
//! code written for `torch::optim::AdamW` work unchanged. `masked` says whether the
//! group is masked by the optimizer's Child-Tuning mode.
//!
//! Each options type converts to and from the core rule's options; the core
//! validates them (childtune::error naming the group).

#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <string>
#include <tuple>

namespace childtune::torch {

namespace detail {
template <class T>
void write_option(::torch::serialize::OutputArchive& archive, const std::string& key, T value) {
    archive.write(key, c10::IValue(value));
}
inline bool read_option(::torch::serialize::InputArchive& archive, const std::string& key, c10::IValue& value) {
    return archive.try_read(key, value);
}
} // namespace detail

//! Options of ChildTuningAdamW: torch's AdamWOptions plus the flavour (the legacy
//! HF-style AdamW of the published Child-Tuning optimizer, or torch's), bias
//! correction and whether the group is masked.
struct ChildTuningAdamWOptions : public ::torch::optim::OptimizerCloneableOptions<ChildTuningAdamWOptions> {
    using betas_t = std::tuple<double, double>;
    ChildTuningAdamWOptions(double lr = 1e-3) : lr_(lr) {} // NOLINT(google-explicit-constructor): as torch's
    TORCH_ARG(double, lr) = 1e-3;
    TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
    TORCH_ARG(double, eps) = 1e-8;
    TORCH_ARG(double, weight_decay) = 1e-2;
    TORCH_ARG(adamw_flavour, flavour) = adamw_flavour::torch;
    TORCH_ARG(bool, correct_bias) = true;
    TORCH_ARG(bool, masked) = true;

public:
    using rule_type = adamw;
    adamw::options to_core() const {
        return {lr(), std::get<0>(betas()), std::get<1>(betas()), eps(), weight_decay(), flavour(), correct_bias()};
    }
    static ChildTuningAdamWOptions from_core(const adamw::options& o, bool is_masked) {
        ChildTuningAdamWOptions r(o.lr);
        r.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay).flavour(o.flavour).correct_bias(o.correct_bias);
        r.masked(is_masked);
        return r;
    }
    double get_lr() const override { return lr(); }
    void set_lr(const double value) override { lr(value); }
    void serialize(::torch::serialize::OutputArchive& archive) const override {
        detail::write_option(archive, "lr", lr());
        detail::write_option(archive, "beta1", std::get<0>(betas()));
        detail::write_option(archive, "beta2", std::get<1>(betas()));
        detail::write_option(archive, "eps", eps());
        detail::write_option(archive, "weight_decay", weight_decay());
        detail::write_option(archive, "flavour", static_cast<std::int64_t>(flavour()));
        detail::write_option(archive, "correct_bias", correct_bias());
        detail::write_option(archive, "masked", masked());
    }
    void serialize(::torch::serialize::InputArchive& archive) override {
        c10::IValue v, w;
        if (detail::read_option(archive, "lr", v)) lr(v.toDouble());
        if (detail::read_option(archive, "beta1", v) && detail::read_option(archive, "beta2", w))
            betas({v.toDouble(), w.toDouble()});
        if (detail::read_option(archive, "eps", v)) eps(v.toDouble());
        if (detail::read_option(archive, "weight_decay", v)) weight_decay(v.toDouble());
        if (detail::read_option(archive, "flavour", v)) flavour(static_cast<adamw_flavour>(v.toInt()));
        if (detail::read_option(archive, "correct_bias", v)) correct_bias(v.toBool());
        if (detail::read_option(archive, "masked", v)) masked(v.toBool());
    }
    friend bool operator==(const ChildTuningAdamWOptions& a, const ChildTuningAdamWOptions& b) {
        return a.to_core() == b.to_core() && a.masked() == b.masked();
    }
};

//! Options of ChildTuningAdam: torch's AdamOptions (L2 weight decay) plus `masked`.
struct ChildTuningAdamOptions : public ::torch::optim::OptimizerCloneableOptions<ChildTuningAdamOptions> {
    using betas_t = std::tuple<double, double>;
    ChildTuningAdamOptions(double lr = 1e-3) : lr_(lr) {} // NOLINT(google-explicit-constructor)
    TORCH_ARG(double, lr) = 1e-3;
    TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
    TORCH_ARG(double, eps) = 1e-8;
    TORCH_ARG(double, weight_decay) = 0;
    TORCH_ARG(bool, masked) = true;

public:
    using rule_type = adam;
    adam::options to_core() const { return {lr(), std::get<0>(betas()), std::get<1>(betas()), eps(), weight_decay()}; }
    static ChildTuningAdamOptions from_core(const adam::options& o, bool is_masked) {
        ChildTuningAdamOptions r(o.lr);
        r.betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
        r.masked(is_masked);
        return r;
    }
    double get_lr() const override { return lr(); }
    void set_lr(const double value) override { lr(value); }
    void serialize(::torch::serialize::OutputArchive& archive) const override {
        detail::write_option(archive, "lr", lr());
        detail::write_option(archive, "beta1", std::get<0>(betas()));
        detail::write_option(archive, "beta2", std::get<1>(betas()));
        detail::write_option(archive, "eps", eps());
        detail::write_option(archive, "weight_decay", weight_decay());
        detail::write_option(archive, "masked", masked());
    }
    void serialize(::torch::serialize::InputArchive& archive) override {
        c10::IValue v, w;
        if (detail::read_option(archive, "lr", v)) lr(v.toDouble());
        if (detail::read_option(archive, "beta1", v) && detail::read_option(archive, "beta2", w))
            betas({v.toDouble(), w.toDouble()});
        if (detail::read_option(archive, "eps", v)) eps(v.toDouble());
        if (detail::read_option(archive, "weight_decay", v)) weight_decay(v.toDouble());
        if (detail::read_option(archive, "masked", v)) masked(v.toBool());
    }
    friend bool operator==(const ChildTuningAdamOptions& a, const ChildTuningAdamOptions& b) {
        return a.to_core() == b.to_core() && a.masked() == b.masked();
    }
};

//! Options of ChildTuningSGD: torch's SGDOptions plus `masked`.
struct ChildTuningSGDOptions : public ::torch::optim::OptimizerCloneableOptions<ChildTuningSGDOptions> {
    ChildTuningSGDOptions(double lr) : lr_(lr) {} // NOLINT(google-explicit-constructor)
    TORCH_ARG(double, lr);
    TORCH_ARG(double, momentum) = 0;
    TORCH_ARG(double, dampening) = 0;
    TORCH_ARG(double, weight_decay) = 0;
    TORCH_ARG(bool, nesterov) = false;
    TORCH_ARG(bool, masked) = true;

public:
    using rule_type = sgd;
    sgd::options to_core() const { return {lr(), momentum(), dampening(), weight_decay(), nesterov()}; }
    static ChildTuningSGDOptions from_core(const sgd::options& o, bool is_masked) {
        ChildTuningSGDOptions r(o.lr);
        r.momentum(o.momentum).dampening(o.dampening).weight_decay(o.weight_decay).nesterov(o.nesterov);
        r.masked(is_masked);
        return r;
    }
    double get_lr() const override { return lr(); }
    void set_lr(const double value) override { lr(value); }
    void serialize(::torch::serialize::OutputArchive& archive) const override {
        detail::write_option(archive, "lr", lr());
        detail::write_option(archive, "momentum", momentum());
        detail::write_option(archive, "dampening", dampening());
        detail::write_option(archive, "weight_decay", weight_decay());
        detail::write_option(archive, "nesterov", nesterov());
        detail::write_option(archive, "masked", masked());
    }
    void serialize(::torch::serialize::InputArchive& archive) override {
        c10::IValue v;
        if (detail::read_option(archive, "lr", v)) lr(v.toDouble());
        if (detail::read_option(archive, "momentum", v)) momentum(v.toDouble());
        if (detail::read_option(archive, "dampening", v)) dampening(v.toDouble());
        if (detail::read_option(archive, "weight_decay", v)) weight_decay(v.toDouble());
        if (detail::read_option(archive, "nesterov", v)) nesterov(v.toBool());
        if (detail::read_option(archive, "masked", v)) masked(v.toBool());
    }
    friend bool operator==(const ChildTuningSGDOptions& a, const ChildTuningSGDOptions& b) {
        return a.to_core() == b.to_core() && a.masked() == b.masked();
    }
};

} // namespace childtune::torch
