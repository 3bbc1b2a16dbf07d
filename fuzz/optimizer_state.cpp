//! libFuzzer target: the optimizer state file (childtune::optimizer::load).
//!
//! The input's first byte picks the checksum fix-up (bit 0) and the optimizer the
//! file is loaded into (bits 1-2: AdamW with full state, AdamW with compact
//! Child-Tuning_D state, SGD with momentum); the rest is the file. Oracle: a
//! rejected file throws childtune::error and leaves the optimizer's saved state
//! and the parameters byte-identical; an accepted one saves back to a file that
//! loads again to the same bytes, and the optimizer can still step.
#include "support/harness.hpp"

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <cstdint>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace childtune;

//! The model every input is loaded into: two masked encoder tensors of mixed
//! precision and a dense head, with odd sizes (partial SIMD blocks, partial mask
//! words).
struct model {
    std::vector<float> w0 = std::vector<float>(67), g0 = std::vector<float>(67);
    std::vector<bfloat16> w1 = std::vector<bfloat16>(13), g1 = std::vector<bfloat16>(13);
    std::vector<double> head = std::vector<double>(5), ghead = std::vector<double>(5);

    model() {
        for (std::size_t i = 0; i < w0.size(); ++i) w0[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
        for (std::size_t i = 0; i < w1.size(); ++i) w1[i] = bfloat16(static_cast<float>(i) * 0.125f);
        for (std::size_t i = 0; i < head.size(); ++i) head[i] = 1.0 / static_cast<double>(i + 1);
    }
    void gradients(int t) {
        for (std::size_t i = 0; i < g0.size(); ++i) g0[i] = static_cast<float>((static_cast<int>(i) * 5 + t) % 11 - 5) * 0.01f;
        for (std::size_t i = 0; i < g1.size(); ++i) g1[i] = bfloat16(static_cast<float>((static_cast<int>(i) + t) % 3 - 1) * 0.02f);
        for (std::size_t i = 0; i < ghead.size(); ++i) ghead[i] = 0.03 * static_cast<double>(t + 1) - 0.01 * static_cast<double>(i);
    }
    std::string parameter_bytes() const {
        std::string s;
        s.append(reinterpret_cast<const char*>(w0.data()), w0.size() * sizeof(float));
        s.append(reinterpret_cast<const char*>(w1.data()), w1.size() * sizeof(bfloat16));
        s.append(reinterpret_cast<const char*>(head.data()), head.size() * sizeof(double));
        return s;
    }
};

mask_set model_masks() {
    mask_set set;
    bit_mask a(67), b(13);
    for (std::size_t i = 0; i < 67; i += 3) a.set(i, true);
    for (std::size_t i = 0; i < 13; i += 2) b.set(i, true);
    set.add("encoder.weight", a);
    set.add("encoder.bias", b);
    return set;
}

template <class Rule>
void attach(optimizer<Rule>& opt, model& m, const typename Rule::options& o) {
    const auto enc = opt.add_group("encoder", o, true);
    const auto hd = opt.add_group("head", o, false);
    opt.add_parameter(enc, "encoder.weight", m.w0, m.g0);
    opt.add_parameter(enc, "encoder.bias", m.w1, m.g1);
    opt.add_parameter(hd, "head.weight", m.head, m.ghead);
}

template <class Rule>
std::string saved(const optimizer<Rule>& opt) {
    std::ostringstream out;
    opt.save(out);
    return out.str();
}

const adamw::options adamw_options{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.01,
                                   .flavour = adamw_flavour::legacy};
const sgd::options sgd_options{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3};

//! Runs `body(opt, m)` on a fresh optimizer of kind `kind` (bits 1-2 of the selector).
template <class Body>
void with_subject(unsigned kind, Body&& body) {
    model m;
    switch (kind % 3) {
    case 0: {
        optimizer<adamw> opt(bernoulli{0.5, 3});
        attach(opt, m, adamw_options);
        body(opt, m);
        break;
    }
    case 1: {
        optimizer<adamw> opt(fixed{model_masks()}, optimizer_options{.compact_fixed_state = true});
        attach(opt, m, adamw_options);
        body(opt, m);
        break;
    }
    default: {
        optimizer<sgd> opt(dense{});
        attach(opt, m, sgd_options);
        body(opt, m);
        break;
    }
    }
}

//! Loads `file` into a fresh optimizer of `kind` and checks the oracle; returns
//! whether the file was accepted.
bool load_and_check(unsigned kind, const std::string& file) {
    bool accepted = false;
    with_subject(kind, [&](auto& opt, model& m) {
        m.gradients(0);
        opt.step(); // some state exists before the load, so "unchanged" means something
        const std::string before = saved(opt), params = m.parameter_bytes();
        std::istringstream in(file);
        try {
            opt.load(in);
        } catch (const childtune::error&) {
            fuzz::require(saved(opt) == before, "a rejected load changed the optimizer's state");
            fuzz::require(m.parameter_bytes() == params, "a rejected load changed the parameters");
            return;
        }
        accepted = true;
        const std::string again = saved(opt);
        with_subject(kind, [&](auto& twin, model&) {
            std::istringstream in2(again);
            twin.load(in2); // a file the optimizer wrote must load
            fuzz::require(saved(twin) == again, "an accepted state does not survive save/load unchanged");
        });
        m.gradients(1);
        (void)opt.step(); // whatever was loaded, a step must not misbehave
    });
    return accepted;
}

fuzz::seed_map make_seeds() {
    fuzz::seed_map seeds;
    for (unsigned kind = 0; kind < 3; ++kind)
        for (int steps : {0, 3})
            with_subject(kind, [&](auto& opt, model& m) {
                for (int t = 0; t < steps; ++t) {
                    m.gradients(t);
                    opt.step();
                }
                const std::string name = "valid-kind" + std::to_string(kind) + "-steps" + std::to_string(steps);
                seeds[name] = fuzz::frame(static_cast<std::uint8_t>(kind << 1), saved(opt));
            });
    // The same model under the other mask modes, loaded into kind 0 (the file's
    // mask mode replaces the optimizer's).
    with_subject(0, [&](auto& opt, model& m) {
        opt.set_mask(fixed{model_masks()});
        m.gradients(0);
        opt.step();
        seeds["valid-kind0-fixed"] = fuzz::frame(0, saved(opt));
        opt.set_mask(dense{});
        m.gradients(1);
        opt.step();
        seeds["valid-kind0-dense"] = fuzz::frame(0, saved(opt));
    });
    return seeds;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::seed_hooks(make_seeds, [](const std::string& framed) {
        const auto in = fuzz::unframe(reinterpret_cast<const std::uint8_t*>(framed.data()), framed.size());
        return load_and_check((in.selector >> 1) & 3u, in.file);
    });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto in = fuzz::unframe(data, size);
    load_and_check((in.selector >> 1) & 3u, in.file);
    return 0;
}
