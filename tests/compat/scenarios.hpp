#pragma once
// Scenarios recorded with childtune 0.1 (the version before the registry /
// executor architecture) and replayed by every later version: each rule, each
// mask mode (dense, Child-Tuning_F, Child-Tuning_D, compact Child-Tuning_D), the
// non-default masking options and state precisions, on a model of mixed storage
// types. Only the public API of 0.1 is used, so the generator (make_data.cpp)
// compiled against 0.1 and the test (replay.cpp) compiled against today's
// headers run the same code.
//
// Per scenario and step the trajectory records a hash of every parameter bit
// and of the state file's bytes; the state file after `saved_step` steps is
// committed as written by 0.1 (tests/data/v0.1/).

#include <childtune/childtune.hpp>
#include <childtune/mask/fisher.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace compat {

struct tensor_spec {
    const char* name;
    childtune::dtype type;
    std::size_t size;
    bool masked;
};

//! Ragged sizes, every parameter type, a masked and a dense group.
inline const std::vector<tensor_spec>& specs() {
    static const std::vector<tensor_spec> s = {
        {"embed.w", childtune::dtype::float32, 300, false}, {"layer.0.w", childtune::dtype::float32, 1000, true},
        {"layer.0.b", childtune::dtype::float32, 7, true},  {"layer.1.w", childtune::dtype::bfloat16, 130, true},
        {"layer.1.b", childtune::dtype::float16, 70, true}, {"layer.2.w", childtune::dtype::float64, 200, true},
        {"head.w", childtune::dtype::float64, 33, false},
    };
    return s;
}

inline constexpr int steps = 4;
inline constexpr int saved_step = 2;

//! splitmix64, so values are a pure function of (stream, element) on every platform.
inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline double noise(std::uint64_t stream, std::uint64_t i) {
    return static_cast<double>(mix(mix(stream) ^ i) >> 11) * 0x1p-52 - 1.0;
}

using storage = std::variant<std::vector<float>, std::vector<double>, std::vector<childtune::bfloat16>,
                             std::vector<childtune::float16>>;

//! One buffer per tensor: parameters, or one step's gradients.
struct model {
    std::vector<storage> t;

    model(std::uint64_t stream, double scale) {
        for (std::size_t k = 0; k < specs().size(); ++k) {
            const auto fill = [&](auto v) {
                using P = typename decltype(v)::value_type;
                v.resize(specs()[k].size);
                for (std::size_t i = 0; i < v.size(); ++i) {
                    const double x = scale * noise(stream * 1000 + k, i);
                    if constexpr (std::is_same_v<P, double>) v[i] = x;
                    else v[i] = P(static_cast<float>(x));
                }
                t.emplace_back(std::move(v));
            };
            switch (specs()[k].type) {
            case childtune::dtype::float64: fill(std::vector<double>{}); break;
            case childtune::dtype::bfloat16: fill(std::vector<childtune::bfloat16>{}); break;
            case childtune::dtype::float16: fill(std::vector<childtune::float16>{}); break;
            default: fill(std::vector<float>{}); break;
            }
        }
    }
    void assign(const model& other) {
        for (std::size_t k = 0; k < t.size(); ++k)
            std::visit(
                [&](auto& v) {
                    const auto& from = std::get<std::remove_cvref_t<decltype(v)>>(other.t[k]);
                    std::memcpy(v.data(), from.data(), v.size() * sizeof(v[0]));
                },
                t[k]);
    }
    std::string bytes() const {
        std::string out;
        for (const auto& s : t)
            std::visit([&](const auto& v) { out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0])); }, s);
        return out;
    }
};

//! FNV-1a 64 of a byte string, printed as 16 hex digits.
inline std::string hash(const std::string& bytes) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
    char out[17];
    for (int i = 15; i >= 0; --i, h >>= 4) out[i] = "0123456789abcdef"[h & 15];
    out[16] = '\0';
    return out;
}

inline childtune::mask_set fisher_masks() {
    childtune::fisher_accumulator<float> acc({.max_grad_norm = 1.0, .num_batches = 2});
    for (const auto& s : specs())
        if (s.masked) acc.add_tensor(s.name, s.size);
    for (int b = 0; b < 2; ++b) {
        const model g(900 + static_cast<std::uint64_t>(b), 0.1);
        for (std::size_t k = 0; k < specs().size(); ++k)
            if (specs()[k].masked) std::visit([&](const auto& v) { acc.accumulate(specs()[k].name, v); }, g.t[k]);
        acc.end_batch();
    }
    return acc.select(0.3).masks;
}

enum class mode_kind { dense, ct_f, ct_d };

//! One recorded run: a rule with its options, a mask mode and optimizer options.
struct scenario {
    std::string name;
    //! Runs it; `from_state` non-empty resumes from that state file after `saved_step` steps.
    std::function<void(const std::string& from_state, std::vector<std::string>& params, std::vector<std::string>& states,
                       std::string& saved)>
        run;
};

inline childtune::mask_mode make_mode(mode_kind k) {
    switch (k) {
    case mode_kind::ct_f: return childtune::bernoulli{0.3, 0xC0FFEE, 1}; // 0.1's definition
    case mode_kind::ct_d: return childtune::fixed{fisher_masks()};
    default: return childtune::dense{};
    }
}

//! Builds the optimizer, steps it `steps` times (a scheduler changes the masked
//! group's learning rate every step), and records the hashes after each step and
//! the state file after `saved_step` steps. `from_state` non-empty: load it
//! after `saved_step` steps of a fresh optimizer's parameters (as a resumed
//! process: parameters restored from the checkpointed run) and run the rest.
template <class Rule>
void run_scenario(const typename Rule::options& o, mode_kind kind, childtune::optimizer_options oo,
                  std::vector<std::string>& params, std::vector<std::string>& states, std::string& saved,
                  const std::string& from_state = {}) {
    model w(1, 1.0);
    model g(2, 0.1);
    childtune::optimizer<Rule> opt(from_state.empty() ? make_mode(kind) : childtune::mask_mode{childtune::dense{}}, oo);
    auto head = o;
    head.lr *= 10;
    opt.add_group("layers", o, true);
    opt.add_group("other", head, false);
    for (std::size_t k = 0; k < specs().size(); ++k)
        std::visit(
            [&](auto& v) {
                using V = std::remove_cvref_t<decltype(v)>;
                opt.add_parameter(specs()[k].masked ? 0 : 1, specs()[k].name, v, std::get<V>(g.t[k]));
            },
            w.t[k]);
    int first = 0;
    if (!from_state.empty()) {
        // The parameters a checkpointed run had: replay its first steps in a
        // scratch optimizer, then restore the optimizer from the file.
        std::vector<std::string> p, s;
        std::string unused;
        model w2(1, 1.0);
        {
            childtune::optimizer<Rule> scratch(make_mode(kind), oo);
            scratch.add_group("layers", o, true);
            scratch.add_group("other", head, false);
            for (std::size_t k = 0; k < specs().size(); ++k)
                std::visit(
                    [&](auto& v) {
                        using V = std::remove_cvref_t<decltype(v)>;
                        scratch.add_parameter(specs()[k].masked ? 0 : 1, specs()[k].name, v, std::get<V>(g.t[k]));
                    },
                    w2.t[k]);
            for (int t = 0; t < saved_step; ++t) {
                g.assign(model(100 + static_cast<std::uint64_t>(t), 0.1));
                scratch.set_lr(0, o.lr * (1.0 - 0.1 * t));
                scratch.step();
            }
        }
        w.assign(w2);
        std::istringstream in(from_state);
        opt.load(in);
        first = saved_step;
    }
    for (int t = first; t < steps; ++t) {
        g.assign(model(100 + static_cast<std::uint64_t>(t), 0.1));
        opt.set_lr(0, o.lr * (1.0 - 0.1 * t));
        opt.step();
        std::ostringstream out;
        opt.save(out);
        params.push_back(hash(w.bytes()));
        states.push_back(hash(out.str()));
        if (t + 1 == saved_step) saved = out.str();
    }
}

inline std::vector<scenario> scenarios() {
    using namespace childtune;
    std::vector<scenario> out;
    const auto add = [&](std::string name, auto rule_tag, auto options, mode_kind kind, optimizer_options oo = {}) {
        using Rule = decltype(rule_tag);
        out.push_back({std::move(name), [options, kind, oo](const std::string& from_state, std::vector<std::string>& p,
                                                             std::vector<std::string>& s, std::string& saved) {
                           run_scenario<Rule>(options, kind, oo, p, s, saved, from_state);
                       }});
    };
    const adamw::options torch_adamw{.lr = 1e-2, .weight_decay = 0.01};
    const adamw::options legacy_adamw{.lr = 1e-2, .eps = 1e-6, .weight_decay = 0.01, .flavour = adamw_flavour::legacy};
    const adam::options adam_o{.lr = 1e-2, .weight_decay = 0.01};
    const sgd::options sgd_nesterov{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
    const sgd::options sgd_plain{.lr = 0.1};
    for (auto [kind, tag] : {std::pair{mode_kind::dense, "dense"}, std::pair{mode_kind::ct_f, "ct_f"},
                             std::pair{mode_kind::ct_d, "ct_d"}}) {
        const std::string t = tag;
        add("adamw_torch." + t, adamw{}, torch_adamw, kind);
        add("adamw_legacy." + t, adamw{}, legacy_adamw, kind);
        add("adam." + t, adam{}, adam_o, kind);
        add("sgd_nesterov." + t, sgd{}, sgd_nesterov, kind);
        add("sgd_plain." + t, sgd{}, sgd_plain, kind);
    }
    optimizer_options compact;
    compact.compact_fixed_state = true;
    add("adamw_legacy.ct_d_compact", adamw{}, legacy_adamw, mode_kind::ct_d, compact);
    add("adamw_torch.ct_d_compact", adamw{}, torch_adamw, mode_kind::ct_d, compact);
    optimizer_options on_update;
    on_update.masking = {mask_target::update, false};
    add("adamw_legacy.ct_f_on_update", adamw{}, legacy_adamw, mode_kind::ct_f, on_update);
    add("adam.ct_d_on_update", adam{}, adam_o, mode_kind::ct_d, on_update);
    optimizer_options f64;
    f64.precision = state_precision::float64;
    add("adamw_torch.ct_f_float64_state", adamw{}, torch_adamw, mode_kind::ct_f, f64);
    optimizer_options f32;
    f32.precision = state_precision::float32;
    add("sgd_nesterov.ct_f_float32_state", sgd{}, sgd_nesterov, mode_kind::ct_f, f32);
    return out;
}

} // namespace compat
