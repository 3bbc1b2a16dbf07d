// Mask policies written here, in the test, and nowhere in the library: they plug
// into every optimizer through the mask_policy concept alone. This file is built
// into the CPU, the Thrust (CPP and OMP systems) and the LibTorch test programs,
// and requires the same bits from every executor, saved and resumed.

#include "support/every_executor.hpp"

#include <childtune/childtune.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

//! Child-Tuning_F whose keep probability depends on the layer: layer N (from a
//! name "layer.N...") keeps min(1, p0 + N*step_p), other tensors p0. Its views are the
//! built-in Bernoulli views, so device executors draw them on the device.
struct layer_bernoulli {
    double p0 = 0.2;
    double step_p = 0.3;
    std::uint64_t seed = 1;

    static constexpr std::string_view policy_name = "test.layer_bernoulli";

    double p_of(std::string_view name) const {
        if (name.rfind("layer.", 0) != 0) return p0;
        const double p = p0 + step_p * static_cast<double>(name[6] - '0');
        return p < 1.0 ? p : 1.0;
    }
    void validate() const {
        if (!(p0 > 0.0 && p0 <= 1.0 && step_p >= 0.0)) childtune::detail::fail("layer_bernoulli: p out of range");
    }
    childtune::bernoulli_view view(const childtune::tensor_info& t, std::uint64_t step) const {
        return childtune::bernoulli{p_of(t.name), seed}.view(t, step);
    }
    void save(childtune::policy_writer& w) const {
        w.value(p0);
        w.value(step_p);
        w.value(seed);
    }
    static layer_bernoulli load(childtune::policy_reader& r) {
        layer_bernoulli m;
        m.p0 = r.value<double>();
        m.step_p = r.value<double>();
        m.seed = r.value<std::uint64_t>();
        return m;
    }
    friend bool operator==(const layer_bernoulli&, const layer_bernoulli&) = default;
};

//! A view type of the test's own: element i is kept iff (i + offset + step) % period
//! is 0, with no rescaling. CPU executors call it through function pointers;
//! device executors get its keep words from the host.
struct stripe_view {
    static constexpr bool is_dense = false;
    std::uint64_t period = 3, phase = 0;
    bool keep(std::uint64_t i) const { return (i + phase) % period == 0; }
    std::uint64_t bits64(std::uint64_t first) const {
        std::uint64_t w = 0;
        for (unsigned j = 0; j < 64; ++j) w |= std::uint64_t{keep(first + j)} << j;
        return w;
    }
    double keep_probability() const { return 1.0; }
};
static_assert(childtune::mask_view<stripe_view>);

//! Keeps every `period`-th element, shifted by the step: a mask refreshed every
//! step, of a kind the library does not know.
struct stripes {
    std::uint64_t period = 3;

    static constexpr std::string_view policy_name = "test.stripes";

    void validate() const {
        if (period == 0) childtune::detail::fail("stripes: period 0");
    }
    stripe_view view(const childtune::tensor_info& t, std::uint64_t step) const { return {period, t.offset + step}; }
    void save(childtune::policy_writer& w) const { w.value(period); }
    static stripes load(childtune::policy_reader& r) { return {r.value<std::uint64_t>()}; }
};

//! A policy without save/load: optimizers step with it; saving says what is missing.
struct first_half {
    void validate() const {}
    stripe_view view(const childtune::tensor_info&, std::uint64_t) const { return {1, 0}; }
};

static_assert(childtune::mask_policy<layer_bernoulli> && childtune::mask_policy<stripes> &&
              childtune::mask_policy<first_half>);

//! Three groups: layer 0 under Child-Tuning_F, layer 1 under Child-Tuning_D, the head dense.
every_executor::setup three_groups(const childtune::any_mask& layer0, const childtune::any_mask& layer1) {
    every_executor::setup u;
    u.groups = {"layer0", "layer1", "head"};
    u.masked = {true, true, false};
    u.own = {layer0, layer1, std::nullopt};
    u.group_of = [](const std::string& name) -> std::size_t {
        if (name.rfind("layer.0", 0) == 0) return 0;
        if (name.rfind("layer.1", 0) == 0) return 1;
        return 2;
    };
    return u;
}

childtune::mask_set layer1_masks() {
    childtune::mask_set set;
    for (const auto& t : every_executor::specs()) {
        if (t.name.rfind("layer.1", 0) != 0) continue;
        childtune::bit_mask m(t.size);
        for (std::size_t i = 0; i < m.size(); ++i) m.set(i, i % 5 != 2);
        set.add(t.name, std::move(m));
    }
    return set;
}

} // namespace

TEST_CASE("user-defined mask policy: a layer-dependent Bernoulli mask: the same bits on every executor",
          "[mask][user_policy]") {
    every_executor::require_same_bits<childtune::adamw>({.lr = 1e-2, .weight_decay = 0.01},
                                                        every_executor::with_mask(layer_bernoulli{}));
}

TEST_CASE("user-defined mask policy: a view type of its own: the same bits on every executor", "[mask][user_policy]") {
    every_executor::require_same_bits<childtune::sgd>({.lr = 0.1, .momentum = 0.9},
                                                      every_executor::with_mask(stripes{4}));
}

TEST_CASE("user-defined mask policy: one group Child-Tuning_F and one Child-Tuning_D and one dense on every executor",
          "[mask][user_policy]") {
    every_executor::require_same_bits<childtune::adamw>(
        {.lr = 1e-2, .weight_decay = 0.01}, three_groups(layer_bernoulli{0.3, 0.0, 9}, childtune::fixed{layer1_masks()}));
    every_executor::require_same_bits<childtune::adamw>({.lr = 1e-2}, three_groups(stripes{3}, childtune::dense{}));
}

#if !defined(CHILDTUNE_TEST_THRUST) && !defined(CHILDTUNE_TEST_TORCH)
TEST_CASE("user-defined mask policy: decisions are the built-in Bernoulli ones at the layer's p", "[mask][user_policy]") {
    childtune::optimizer<childtune::sgd> opt(layer_bernoulli{0.1, 0.5, 77});
    const auto g = opt.add_group("g", {.lr = 1.0});
    std::vector<float> w0(500, 0.0f), g0(500, 1.0f), w1(500, 0.0f), g1(500, 1.0f);
    opt.add_parameter(g, "layer.0.w", w0, g0);
    opt.add_parameter(g, "layer.1.w", w1, g1);
    opt.step();
    const auto expect = [&](const std::vector<float>& w, const char* name, double p) {
        const auto view = childtune::bernoulli{p, 77}.view(childtune::stable_tensor_key(name), 0);
        const double q = p; // definition 4 (the default) divides by p itself
        for (std::size_t i = 0; i < w.size(); ++i) REQUIRE(w[i] == (view.keep(i) ? -(1.0f / static_cast<float>(q)) : 0.0f));
    };
    expect(w0, "layer.0.w", 0.1);
    expect(w1, "layer.1.w", 0.6);
}

TEST_CASE("user-defined mask policy: saved in the state file and restored only into the same policy", "[mask][user_policy]") {
    childtune::optimizer<childtune::adamw> a(layer_bernoulli{0.2, 0.1, 5});
    const auto g = a.add_group("g", {});
    std::vector<float> w(100, 1.0f), grad(100, 0.5f);
    a.add_parameter(g, "layer.2.w", w, grad);
    a.step();
    std::stringstream file;
    a.save(file);
    const std::string bytes = file.str();

    // The same policy type (other hyperparameters) is given the file's.
    childtune::optimizer<childtune::adamw> b(layer_bernoulli{0.5, 0.0, 1});
    b.add_group("g", {});
    b.add_parameter(0, "layer.2.w", w, grad);
    std::stringstream in(bytes);
    b.load(in);
    REQUIRE(b.mask_policy().target<layer_bernoulli>() != nullptr);
    CHECK(*b.mask_policy().target<layer_bernoulli>() == layer_bernoulli{0.2, 0.1, 5});
    CHECK(b.step_count() == 1);

    // Another policy: a clear error, nothing changed.
    childtune::optimizer<childtune::adamw> c(stripes{2});
    c.add_group("g", {});
    c.add_parameter(0, "layer.2.w", w, grad);
    std::stringstream in2(bytes);
    CHECK_THROWS_WITH(c.load(in2), Catch::Contains("mask policy 'test.layer_bernoulli'") &&
                                       Catch::Contains("this optimizer has 'test.stripes'"));
    CHECK(c.step_count() == 0);
    CHECK(c.mask_policy().target<stripes>() != nullptr);

    // A policy without save/load steps, and saving names what it lacks.
    childtune::optimizer<childtune::adamw> d(first_half{});
    d.add_group("g", {});
    d.add_parameter(0, "layer.2.w", w, grad);
    CHECK(d.step());
    std::stringstream out;
    CHECK_THROWS_WITH(d.save(out), Catch::Contains("cannot be saved") && Catch::Contains("policy_name"));
    CHECK_THROWS_WITH(d.mask(), Catch::Contains("use mask_policy()"));
}

TEST_CASE("user-defined mask policy: group masks are saved per group and validated on registration", "[mask][user_policy]") {
    childtune::optimizer<childtune::adamw> opt;
    const auto f = opt.add_group("f", {}, layer_bernoulli{});
    const auto d = opt.add_group("d", {}, childtune::fixed{layer1_masks()});
    std::vector<float> w(1000, 1.0f), grad(1000, 0.5f), w1(130, 1.0f), g1(130, 0.5f), b1(1, 1.0f), gb1(1, 0.5f);
    opt.add_parameter(f, "layer.0.weight", w, grad);
    // A fixed group refuses a tensor it has no mask for, and changes nothing.
    std::vector<float> other(7), gother(7);
    CHECK_THROWS_WITH(opt.add_parameter(d, "layer.7.x", other, gother), Catch::Contains("no mask for tensor 'layer.7.x'"));
    opt.add_parameter(d, "layer.1.weight", w1, g1);
    opt.add_parameter(d, "layer.1.bias", b1, gb1);
    CHECK(opt.tensor_count() == 3);
    REQUIRE(opt.step());
    CHECK(opt.group_mask(f)->target<layer_bernoulli>() != nullptr);
    CHECK(opt.group_mask(d)->target<childtune::fixed>() != nullptr);
    std::stringstream file;
    opt.save(file);

    childtune::optimizer<childtune::adamw> back;
    back.add_group("f", {}, layer_bernoulli{0.9, 0.0, 3});
    back.add_group("d", {}, childtune::dense{});
    back.add_parameter(0, "layer.0.weight", w, grad);
    back.add_parameter(1, "layer.1.weight", w1, g1);
    back.add_parameter(1, "layer.1.bias", b1, gb1);
    back.load(file);
    CHECK(*back.group_mask(0)->target<layer_bernoulli>() == layer_bernoulli{});
    CHECK(back.group_mask(1)->target<childtune::fixed>()->masks == layer1_masks());
    back.clear_group_mask(0);
    CHECK(back.group_mask(0)->target<childtune::dense>() != nullptr); // the optimizer-wide (dense) mask
}
#endif
