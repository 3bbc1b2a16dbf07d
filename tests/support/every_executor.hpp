#pragma once
// Runs an update rule under a mask policy on every executor compiled into this
// test program — the CPU optimizer always; the Thrust optimizer when the
// program is built with CHILDTUNE_TEST_THRUST (Thrust's CPP or OMP system); the
// LibTorch optimizer, on its fused path and on its ATen path, with
// CHILDTUNE_TEST_TORCH — and requires the same parameter bits from all of them
// after every step, and after a save/load halfway through. A rule, a mask
// policy or an executor that is open by construction passes this without any
// code of its own in the library.

#include <childtune/childtune.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#if defined(CHILDTUNE_TEST_THRUST)
#include <childtune/thrust.hpp>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#endif
#if defined(CHILDTUNE_TEST_TORCH)
#include <childtune/torch.hpp>
#include <torch/types.h>
#endif

namespace every_executor {

struct tensor_spec {
    std::string name;
    std::size_t size;
    bool masked;
};

inline const std::vector<tensor_spec>& specs() {
    static const std::vector<tensor_spec> s = {{"layer.0.weight", 1000, true}, {"layer.0.bias", 77, true},
                                               {"layer.1.weight", 130, true},  {"layer.1.bias", 1, true},
                                               {"head.weight", 33, false}};
    return s;
}

// Values are a pure function of (stream, tensor, element), so every executor's
// copy of the model sees the same numbers.
inline float value(std::uint64_t stream, std::size_t tensor, std::size_t i) {
    std::uint64_t x = stream * 1000003u + tensor * 7919u + i + 1;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return static_cast<float>(static_cast<double>(x >> 11) * 0x1p-53 - 0.5);
}

using trajectory = std::vector<std::vector<float>>; // parameters after each step, concatenated

// How the model's tensors are grouped and masked: by default the reference's
// split (the layers masked by the optimizer-wide mask, the head dense).
struct setup {
    childtune::any_mask wide;
    std::vector<std::string> groups{"layers", "head"};
    std::vector<bool> masked{true, false};
    std::vector<std::optional<childtune::any_mask>> own{std::nullopt, std::nullopt};
    std::function<std::size_t(const std::string&)> group_of = [](const std::string& name) {
        return name.rfind("head", 0) == 0 ? std::size_t{1} : std::size_t{0};
    };
};

//! The reference split with `mask` on the layers.
inline setup with_mask(const childtune::any_mask& mask) {
    setup s;
    s.wide = mask;
    return s;
}

//! Groups, masks and tensors of `u` in a core-style optimizer.
template <class Opt, class Options, class Add>
void configure(Opt& opt, const setup& u, const Options& o, Add&& add) {
    opt.set_mask(u.wide);
    for (std::size_t g = 0; g < u.groups.size(); ++g) {
        opt.add_group(u.groups[g], o, u.masked[g]);
        if (u.own[g]) opt.set_group_mask(g, *u.own[g]);
    }
    for (std::size_t k = 0; k < specs().size(); ++k) add(u.group_of(specs()[k].name), k);
}

// One executor's run: `steps` steps, saved after `save_at` and resumed in a
// fresh optimizer (fresh parameter memory holding the checkpointed values).
struct runner {
    std::string name;
    std::function<trajectory(int steps, int save_at)> run;
};

inline std::vector<float> gradient(std::size_t tensor, std::size_t size, int step) {
    std::vector<float> g(size);
    for (std::size_t i = 0; i < size; ++i) g[i] = 0.1f * value(100 + static_cast<std::uint64_t>(step), tensor, i);
    return g;
}

template <class Opt, class Attach, class Step, class Params>
trajectory run_with_resume(int steps, int save_at, Attach attach, Step step, Params params) {
    trajectory out;
    auto first = attach(std::vector<std::vector<float>>{});
    for (int t = 0; t < save_at; ++t) {
        step(*first, t);
        out.push_back(params(*first));
    }
    std::stringstream file;
    first->save(file);
    std::vector<std::vector<float>> now;
    for (std::size_t k = 0, at = 0; k < specs().size(); at += specs()[k].size, ++k)
        now.emplace_back(out.empty() ? std::vector<float>{} : std::vector<float>(out.back().begin() + static_cast<std::ptrdiff_t>(at),
                                                                                 out.back().begin() + static_cast<std::ptrdiff_t>(at + specs()[k].size)));
    auto second = attach(out.empty() ? std::vector<std::vector<float>>{} : now);
    second->load(file);
    for (int t = save_at; t < steps; ++t) {
        step(*second, t);
        out.push_back(params(*second));
    }
    return out;
}

// The CPU optimizer (childtune::optimizer).
template <class Rule>
runner cpu(const typename Rule::options& o, const setup& u, childtune::optimizer_options oo = {}) {
    return {"cpu", [=](int steps, int save_at) {
                struct model {
                    childtune::optimizer<Rule> opt;
                    std::vector<std::vector<float>> w, g;
                    explicit model(childtune::optimizer_options x) : opt(childtune::dense{}, x) {}
                    void save(std::ostream& out) const { opt.save(out); }
                    void load(std::istream& in) { opt.load(in); }
                };
                const auto attach = [&](std::vector<std::vector<float>> start) {
                    auto m = std::make_unique<model>(oo);
                    for (std::size_t k = 0; k < specs().size(); ++k) {
                        std::vector<float> w(specs()[k].size);
                        for (std::size_t i = 0; i < w.size(); ++i) w[i] = value(1, k, i);
                        m->w.push_back(start.empty() ? w : start[k]);
                        m->g.emplace_back(specs()[k].size);
                    }
                    configure(m->opt, u, o, [&](std::size_t g, std::size_t k) {
                        m->opt.add_parameter(g, specs()[k].name, m->w[k], m->g[k]);
                    });
                    return m;
                };
                const auto step = [](model& m, int t) {
                    for (std::size_t k = 0; k < specs().size(); ++k) { // into the buffers the optimizer views
                        const auto g = gradient(k, specs()[k].size, t);
                        std::copy(g.begin(), g.end(), m.g[k].begin());
                    }
                    REQUIRE(m.opt.step());
                };
                const auto params = [](const model& m) {
                    std::vector<float> all;
                    for (const auto& w : m.w) all.insert(all.end(), w.begin(), w.end());
                    return all;
                };
                return run_with_resume<model>(steps, save_at, attach, step, params);
            }};
}

#if defined(CHILDTUNE_TEST_THRUST)
// The Thrust optimizer on this program's Thrust system.
template <class Rule>
runner thrust_system(const typename Rule::options& o, const setup& u) {
    return {"thrust", [=](int steps, int save_at) {
                struct model {
                    ::childtune::thrust::optimizer<Rule> opt;
                    std::vector<::thrust::device_vector<float>> w, g;
                    void save(std::ostream& out) const { opt.save(::thrust::device, out); }
                    void load(std::istream& in) { opt.load(::thrust::device, in); }
                };
                const auto attach = [&](std::vector<std::vector<float>> start) {
                    auto m = std::make_unique<model>();
                    for (std::size_t k = 0; k < specs().size(); ++k) {
                        std::vector<float> w(specs()[k].size);
                        for (std::size_t i = 0; i < w.size(); ++i) w[i] = value(1, k, i);
                        if (!start.empty()) w = start[k];
                        m->w.emplace_back(w.begin(), w.end());
                        m->g.emplace_back(specs()[k].size);
                    }
                    configure(m->opt, u, o, [&](std::size_t g, std::size_t k) {
                        m->opt.add_parameter(::thrust::device, g, specs()[k].name, m->w[k], m->g[k]);
                    });
                    return m;
                };
                const auto step = [](model& m, int t) {
                    for (std::size_t k = 0; k < specs().size(); ++k) {
                        const auto g = gradient(k, specs()[k].size, t);
                        ::thrust::copy(g.begin(), g.end(), m.g[k].begin());
                    }
                    m.opt.step(::thrust::device);
                };
                const auto params = [](const model& m) {
                    std::vector<float> all;
                    for (const auto& w : m.w) {
                        std::vector<float> host(w.size());
                        ::thrust::copy(w.begin(), w.end(), host.begin());
                        all.insert(all.end(), host.begin(), host.end());
                    }
                    return all;
                };
                return run_with_resume<model>(steps, save_at, attach, step, params);
            }};
}
#endif

#if defined(CHILDTUNE_TEST_TORCH)
// The LibTorch optimizer over the rule (rule_options), fused or ATen path.
template <class Rule>
runner torch_adapter(const typename Rule::options& o, const setup& u, bool aten) {
    return {aten ? "torch/aten" : "torch/fused", [=](int steps, int save_at) {
                using optimizer = childtune::torch::child_tuning_optimizer<childtune::torch::rule_options<Rule>>;
                struct model {
                    std::vector<at::Tensor> w;
                    std::unique_ptr<optimizer> opt;
                    void save(std::ostream& out) const {
                        ::torch::serialize::OutputArchive archive;
                        opt->save(archive);
                        archive.save_to(out);
                    }
                    void load(std::istream& in) {
                        ::torch::serialize::InputArchive archive;
                        archive.load_from(in);
                        opt->load(archive);
                    }
                };
                const auto attach = [&](std::vector<std::vector<float>> start) {
                    auto m = std::make_unique<model>();
                    std::vector<typename optimizer::group_type> groups;
                    for (std::size_t g = 0; g < u.groups.size(); ++g)
                        groups.push_back({{}, {}, childtune::torch::rule_options<Rule>(o, u.masked[g])});
                    for (std::size_t k = 0; k < specs().size(); ++k) {
                        std::vector<float> w(specs()[k].size);
                        for (std::size_t i = 0; i < w.size(); ++i) w[i] = value(1, k, i);
                        if (!start.empty()) w = start[k];
                        at::Tensor t = at::from_blob(w.data(), {static_cast<std::int64_t>(w.size())}, at::kFloat).clone();
                        t.set_requires_grad(true);
                        m->w.push_back(t);
                        auto& g = groups[u.group_of(specs()[k].name)];
                        g.names.push_back(specs()[k].name);
                        g.params.push_back(t);
                    }
                    m->opt = std::make_unique<optimizer>(groups, u.wide);
                    for (std::size_t g = 0; g < u.groups.size(); ++g)
                        if (u.own[g]) m->opt->set_group_mask(g, *u.own[g]);
                    m->opt->force_aten_path(aten);
                    return m;
                };
                const auto step = [](model& m, int t) {
                    for (std::size_t k = 0; k < specs().size(); ++k) {
                        auto g = gradient(k, specs()[k].size, t);
                        m.w[k].mutable_grad() = at::from_blob(g.data(), {static_cast<std::int64_t>(g.size())}, at::kFloat).clone();
                    }
                    m.opt->step();
                    REQUIRE(m.opt->last_step().applied);
                };
                const auto params = [](const model& m) {
                    std::vector<float> all;
                    for (const auto& w : m.w) {
                        const float* d = w.template data_ptr<float>();
                        all.insert(all.end(), d, d + w.numel());
                    }
                    return all;
                };
                return run_with_resume<model>(steps, save_at, attach, step, params);
            }};
}
#endif

// Every runner of this program for Rule with options `o`, set up as `u`.
template <class Rule>
std::vector<runner> all(const typename Rule::options& o, const setup& u) {
    std::vector<runner> out{cpu<Rule>(o, u)};
#if defined(CHILDTUNE_TEST_THRUST)
    out.push_back(thrust_system<Rule>(o, u));
#endif
#if defined(CHILDTUNE_TEST_TORCH)
    out.push_back(torch_adapter<Rule>(o, u, false));
    out.push_back(torch_adapter<Rule>(o, u, true));
#endif
    return out;
}

// The masks a rule is checked under: dense, Child-Tuning_F, Child-Tuning_D.
inline std::vector<childtune::any_mask> masks() {
    childtune::mask_set fixed;
    for (std::size_t k = 0; k < specs().size(); ++k) {
        if (!specs()[k].masked) continue;
        childtune::bit_mask m(specs()[k].size);
        for (std::size_t i = 0; i < m.size(); ++i) m.set(i, value(7, k, i) < 0.1f);
        fixed.add(specs()[k].name, std::move(m));
    }
    return {childtune::dense{}, childtune::bernoulli{0.3, 0x5EED}, childtune::fixed{fixed}};
}

//! Every executor of this program gives the CPU optimizer's bits after every
//! step, uninterrupted and resumed from a state file written after step 2.
template <class Rule>
void require_same_bits(const typename Rule::options& o, const setup& u, int steps = 5) {
    const trajectory reference = cpu<Rule>(o, u).run(steps, steps);
    for (const auto& r : all<Rule>(o, u)) {
        INFO("executor " << r.name);
        for (int save_at : {steps, 2}) {
            INFO("saved and resumed after step " << save_at);
            const trajectory got = r.run(steps, save_at);
            REQUIRE(got.size() == reference.size());
            for (std::size_t t = 0; t < got.size(); ++t) {
                INFO("after step " << t + 1);
                REQUIRE(got[t].size() == reference[t].size());
                REQUIRE(std::memcmp(got[t].data(), reference[t].data(), got[t].size() * sizeof(float)) == 0);
            }
        }
    }
}

} // namespace every_executor
