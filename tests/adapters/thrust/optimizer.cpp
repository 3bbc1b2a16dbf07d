// The Thrust adapter's optimizer against the core optimizer: the same steps
// (groups, every mask mode, bf16 parameters), byte-identical state files, and
// checkpoints that resume across the two in both directions.

#include "adapters/thrust/host_copy.hpp"

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

// Using-declarations, not `using namespace childtune` (see step.cpp).
using childtune::adamw;
using childtune::bernoulli;
using childtune::bfloat16;
using childtune::bit_mask;
using childtune::dense;
using childtune::fixed;
using childtune::mask_set;
using childtune::sgd;
namespace ct = ::childtune::thrust;

namespace {

const std::vector<std::pair<std::string, std::size_t>> optimizer_shapes = {
    {"layer.0.w", 300}, {"layer.0.b", 17}, {"layer.1.w", 1000}, {"head.w", 130}};

bool is_head(const std::string& name) { return name.rfind("head", 0) == 0; }

template <class P>
struct model {
    std::vector<std::vector<P>> w, g;           // the core optimizer's copy
    std::vector<::thrust::device_vector<P>> dw, dg; // the device optimizer's copy

    model() {
        std::mt19937 rng(9);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (const auto& [name, size] : optimizer_shapes) {
            w.emplace_back(size);
            g.emplace_back(size);
            for (auto& x : w.back()) x = P(normal(rng));
            dw.emplace_back(w.back().begin(), w.back().end());
            dg.emplace_back(size);
        }
    }
    void new_gradients(std::mt19937& rng) {
        std::normal_distribution<float> normal(0.0f, 0.1f);
        for (std::size_t t = 0; t < g.size(); ++t) {
            for (auto& x : g[t]) x = P(normal(rng));
            ::thrust::copy(g[t].begin(), g[t].end(), dg[t].begin());
        }
    }
    bool same_parameters() const {
        for (std::size_t t = 0; t < w.size(); ++t)
            if (!childtune_thrust_test::same_bits(w[t], dw[t])) return false;
        return true;
    }
};

mask_set some_masks() {
    mask_set m;
    for (const auto& [name, size] : optimizer_shapes) {
        if (is_head(name)) continue;
        bit_mask bits(size);
        for (std::size_t i = name.size() % 4; i < size; i += 4) bits.set(i);
        m.add(name, std::move(bits));
    }
    return m;
}

template <class Rule, class P>
struct twin_optimizers {
    childtune::optimizer<Rule> core;
    ct::optimizer<Rule, P> dev;

    twin_optimizers(model<P>& m, const typename Rule::options& layers, const typename Rule::options& head) {
        for (auto* o : {&layers, &head}) {
            const bool masked = o == &layers;
            core.add_group(masked ? "layers" : "head", *o, masked);
            dev.add_group(masked ? "layers" : "head", *o, masked);
        }
        for (std::size_t t = 0; t < optimizer_shapes.size(); ++t) {
            const std::size_t group = is_head(optimizer_shapes[t].first) ? 1 : 0;
            core.add_parameter(group, optimizer_shapes[t].first, m.w[t], m.g[t]);
            dev.add_parameter(::thrust::device, group, optimizer_shapes[t].first, m.dw[t], m.dg[t]);
        }
    }
    void set_mask(const childtune::mask_mode& mode) {
        core.set_mask(mode);
        if (const auto* f = std::get_if<fixed>(&mode))
            dev.set_mask(ct::device_mask_set::upload(::thrust::device, f->masks));
        else if (const auto* b = std::get_if<bernoulli>(&mode))
            dev.set_mask(*b);
        else
            dev.set_mask(dense{});
    }
};

std::string saved(const auto& opt) {
    std::ostringstream out;
    opt.save(out);
    return out.str();
}
template <class Rule, class P>
std::string saved(const ct::optimizer<Rule, P>& opt) {
    std::ostringstream out;
    opt.save(::thrust::device, out);
    return out.str();
}

template <class Rule, class P>
void check_twins(const typename Rule::options& layers, const typename Rule::options& head) {
    for (const childtune::mask_mode& mode :
         {childtune::mask_mode{dense{}}, childtune::mask_mode{bernoulli{0.3, 5}}, childtune::mask_mode{fixed{some_masks()}}}) {
        CAPTURE(mode.index());
        model<P> m;
        twin_optimizers<Rule, P> opt(m, layers, head);
        opt.set_mask(mode);
        std::mt19937 rng(2);
        for (int step = 0; step < 3; ++step) {
            m.new_gradients(rng);
            opt.core.step();
            opt.dev.step(::thrust::device);
            REQUIRE(m.same_parameters());
        }
        REQUIRE(opt.dev.step_count() == 3);
        REQUIRE(saved(opt.dev) == saved(opt.core)); // same format, same state, byte for byte

        // Resume across: the core continues from the device's file and the device
        // from the core's; both then step as one.
        std::istringstream from_dev(saved(opt.dev)), from_core(saved(opt.core));
        model<P> m2 = m;
        twin_optimizers<Rule, P> resumed(m2, typename Rule::options{}, typename Rule::options{});
        resumed.core.load(from_dev);
        resumed.dev.load(::thrust::device, from_core);
        REQUIRE(resumed.dev.group_options(0) == layers);
        m.new_gradients(rng);
        m2.g = m.g;
        for (std::size_t t = 0; t < m.dg.size(); ++t) m2.dg[t] = m.dg[t];
        opt.core.step();
        resumed.core.step();
        resumed.dev.step(::thrust::device);
        REQUIRE(m2.same_parameters());
        REQUIRE(std::memcmp(m2.w[0].data(), m.w[0].data(), m.w[0].size() * sizeof(P)) == 0);
    }
}

} // namespace

TEST_CASE("device optimizer steps as the core optimizer and shares its state file", "[thrust][optimizer]") {
    SECTION("adamw, fp32") {
        check_twins<adamw, float>({.lr = 1e-2, .weight_decay = 0.1}, {.lr = 3e-2, .weight_decay = 0.0});
    }
    SECTION("adamw, bf16 parameters") {
        check_twins<adamw, bfloat16>({.lr = 1e-2, .weight_decay = 0.1, .flavour = childtune::adamw_flavour::legacy},
                                     {.lr = 3e-2});
    }
    SECTION("sgd with momentum") { check_twins<sgd, float>({.lr = 1e-2, .momentum = 0.9}, {.lr = 1e-1}); }
}

TEST_CASE("device optimizer rejects bad input and keeps its state", "[thrust][optimizer]") {
    model<float> m;
    ct::optimizer<adamw> opt;
    const auto g = opt.add_group("layers", {.lr = 1e-2});
    REQUIRE_THROWS_WITH(opt.add_group("layers", {}), Catch::Contains("added twice"));
    REQUIRE_THROWS_WITH(opt.add_group("bad", {.lr = -1.0}), Catch::Contains("lr"));
    opt.add_parameter(::thrust::device, g, "layer.0.w", m.dw[0], m.dg[0]);
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "layer.0.w", m.dw[1], m.dg[1]),
                        Catch::Contains("registered twice"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, 7, "x", m.dw[1], m.dg[1]), Catch::Contains("out of range"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "layer.1.w", m.dw[2], m.dg[1]),
                        Catch::Contains("gradient has 17 elements, parameter has 1000"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "collides", ::thrust::raw_pointer_cast(m.dw[1].data()),
                                          ::thrust::raw_pointer_cast(m.dg[1].data()), 17,
                                          childtune::stable_tensor_key("layer.0.w")),
                        Catch::Contains("collides with tensor 'layer.0.w'"));
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "host", m.w[1].data(), m.g[1].data(), 17),
                        Catch::Contains("the parameter is host memory"));
#endif
    REQUIRE(opt.tensor_count() == 1);

    // A fixed mask that misses a masked tensor is refused; the mode stays dense.
    REQUIRE_THROWS_WITH(opt.set_mask(ct::device_mask_set::upload(::thrust::device, mask_set{})),
                        Catch::Contains("no mask for tensor 'layer.0.w'"));
    REQUIRE(std::holds_alternative<dense>(opt.mask()));

    std::mt19937 rng(1);
    m.new_gradients(rng);
    opt.step(::thrust::device);
    const auto before = saved(opt);

    // A state file of another parameter set changes nothing.
    ct::optimizer<adamw> other;
    other.add_group("layers", {});
    other.add_parameter(::thrust::device, 0, "layer.0.w", m.dw[1], m.dg[1]); // 17 elements, not 300
    REQUIRE_THROWS_WITH(
        [&] {
            std::istringstream in(saved(other));
            opt.load(::thrust::device, in);
        }(),
        Catch::Contains("has 17 elements, the parameter has 300"));
    std::string torn = before.substr(0, before.size() - 9);
    std::istringstream torn_in(torn);
    REQUIRE_THROWS(opt.load(::thrust::device, torn_in));
    REQUIRE(saved(opt) == before);
    REQUIRE(opt.state(::thrust::device, "layer.0.w", 1).size() == 300);
    REQUIRE(opt.state_bytes() == 2 * 300 * sizeof(float));
}

TEST_CASE("bad input: device optimizer refuses aliasing and made-up sizes, and keeps its state",
          "[thrust][optimizer][bad_input]") {
    model<float> m;
    ct::optimizer<adamw> opt(childtune::masking_options{});
    const auto g = opt.add_group("layers", {.lr = 1e-2});
    opt.add_parameter(::thrust::device, g, "layer.0.w", m.dw[0], m.dg[0]);
    std::mt19937 rng(3);
    m.new_gradients(rng);
    opt.step(::thrust::device);
    const auto before = saved(opt);
    float* w2 = ::thrust::raw_pointer_cast(m.dw[2].data()); // 1000 elements
    float* w0 = ::thrust::raw_pointer_cast(m.dw[0].data());
    const float* g2 = ::thrust::raw_pointer_cast(m.dg[2].data());

    // Overlap, not only the same pointer.
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "same", w2, w2, 100),
                        Catch::Contains("'same'") && Catch::Contains("parameter and gradient memory overlap"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "shifted", w2, w2 + 99, 100),
                        Catch::Contains("'shifted'") && Catch::Contains("parameter and gradient memory overlap"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "inside", w0 + 10, g2, 10),
                        Catch::Contains("'inside'") && Catch::Contains("overlaps tensor 'layer.0.w'"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "reads_w0", w2, w0, 10),
                        Catch::Contains("'reads_w0'") && Catch::Contains("overlaps the parameter of tensor 'layer.0.w'"));
    // Sizes no allocation has: refused before any size arithmetic (never dereferenced).
    for (const std::uint64_t n : {childtune::detail::max_tensor_elements<float> + 1, std::numeric_limits<std::uint64_t>::max()})
        REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "huge", w2, g2, n),
                            Catch::Contains("'huge'") && Catch::Contains("exceed the address space"));
    REQUIRE_THROWS_WITH(opt.add_parameter(::thrust::device, g, "empty", w2, g2, 0), Catch::Contains("has no element"));
    REQUIRE(opt.tensor_count() == 1);
    // p at and beyond the edges.
    for (const double p : {0.0, -0.0, std::nextafter(1.0, 2.0), std::numeric_limits<double>::quiet_NaN(), 1e-12})
        REQUIRE_THROWS_WITH(opt.set_mask(bernoulli{p, 1}), Catch::Contains("bernoulli mask"));
    REQUIRE(std::holds_alternative<dense>(opt.mask()));
    for (const double v : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()})
        REQUIRE_THROWS_WITH(opt.set_lr(g, v), Catch::Contains("group 'layers'") && Catch::Contains("lr"));
    REQUIRE_THROWS_WITH(ct::optimizer<adamw>(childtune::masking_options{static_cast<childtune::mask_target>(5), true}),
                        Catch::Contains("unknown mask target"));
    REQUIRE(saved(opt) == before);

    // An optimizer without tensors, and a masked group without tensors, are
    // refused (a silent no-op otherwise); with allow_empty they step.
    ct::optimizer<adamw> refused;
    REQUIRE_THROWS_WITH(refused.step(::thrust::device), Catch::Contains("no tensor is registered"));
    refused.add_group("empty", {});
    REQUIRE_THROWS_WITH(refused.step(::thrust::device), Catch::Contains("no tensor is registered"));
    REQUIRE(refused.step_count() == 0);
    ct::optimizer<adamw> none(childtune::optimizer_options{.on_nonfinite = childtune::nonfinite_policy::unchecked, .allow_empty = true});
    none.step(::thrust::device);
    none.add_group("empty", {});
    none.step(::thrust::device);
    REQUIRE(none.step_count() == 2);
}
