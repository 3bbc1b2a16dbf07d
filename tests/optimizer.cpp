#include "reference/naive_optimizers.hpp"
#include "support/file_surgery.hpp"

#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace childtune;

namespace {
// A small model: two masked encoder tensors of mixed precision and a dense head.
struct model {
    std::vector<float> w0 = std::vector<float>(3000), g0 = std::vector<float>(3000);
    std::vector<bfloat16> w1 = std::vector<bfloat16>(129), g1 = std::vector<bfloat16>(129);
    std::vector<double> head = std::vector<double>(10), ghead = std::vector<double>(10);
    std::mt19937 rng{17};

    model() {
        std::normal_distribution<float> n;
        for (auto& x : w0) x = n(rng);
        for (auto& x : w1) x = bfloat16(n(rng));
        for (auto& x : head) x = n(rng);
    }
    template <class Rule>
    void attach(optimizer<Rule>& opt, const typename Rule::options& o) {
        const auto enc = opt.add_group("encoder", o, true);
        auto head_options = o;
        head_options.lr *= 10;
        const auto hd = opt.add_group("head", head_options, false);
        opt.add_parameter(enc, "layer.0.weight", w0, g0);
        opt.add_parameter(enc, "layer.0.bias", w1, g1);
        opt.add_parameter(hd, "head.weight", head, ghead);
    }
    void new_gradients() {
        std::normal_distribution<float> n(0.0f, 0.1f);
        for (auto& x : g0) x = n(rng);
        for (auto& x : g1) x = bfloat16(n(rng));
        for (auto& x : ghead) x = n(rng);
    }
    std::string snapshot() const {
        std::string s;
        s.append(reinterpret_cast<const char*>(w0.data()), w0.size() * 4);
        s.append(reinterpret_cast<const char*>(w1.data()), w1.size() * 2);
        s.append(reinterpret_cast<const char*>(head.data()), head.size() * 8);
        return s;
    }
};

mask_set masks_for_model(double p) {
    std::mt19937 rng(4);
    std::bernoulli_distribution keep(p);
    mask_set s;
    bit_mask a(3000), b(129);
    for (std::size_t i = 0; i < 3000; ++i) a.set(i, keep(rng));
    for (std::size_t i = 0; i < 129; ++i) b.set(i, keep(rng));
    s.add("layer.0.weight", a);
    s.add("layer.0.bias", b);
    return s;
}

template <class Rule>
std::string state_of(const optimizer<Rule>& opt) {
    std::stringstream out;
    opt.save(out);
    return out.str();
}

// Checks that `action` throws childtune::error containing every fragment and
// changes neither the optimizer (its full saved state) nor the parameters.
template <class Rule, class F>
void require_rejected(optimizer<Rule>& opt, const model& m, F&& action, std::initializer_list<const char*> fragments) {
    const std::string before = state_of(opt), params = m.snapshot();
    try {
        action();
        FAIL("expected childtune::error");
    } catch (const childtune::error& e) {
        for (const char* f : fragments) {
            INFO("message: " << e.what());
            CHECK(std::string(e.what()).find(f) != std::string::npos);
        }
    }
    CHECK(state_of(opt) == before);
    CHECK(m.snapshot() == params);
}

const adamw::options base{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.01,
                          .flavour = adamw_flavour::legacy};
} // namespace

TEST_CASE("Child-Tuning_F with p = 1 reproduces the dense optimizer bit for bit", "[optimizer]") {
    for (auto flavour : {adamw_flavour::torch, adamw_flavour::legacy}) {
        model a, b;
        optimizer<adamw> dense_opt(dense{}), ct_opt(bernoulli{1.0, 77});
        auto o = base;
        o.flavour = flavour;
        a.attach(dense_opt, o);
        b.attach(ct_opt, o);
        for (int t = 0; t < 10; ++t) {
            a.new_gradients();
            b.new_gradients();
            dense_opt.step();
            ct_opt.step();
        }
        CHECK(a.snapshot() == b.snapshot());
    }
}

TEST_CASE("Unmasked groups train densely under every mask mode", "[optimizer][groups]") {
    for (const mask_mode& mode : {mask_mode{bernoulli{0.1, 1}}, mask_mode{fixed{masks_for_model(0.2)}}}) {
        model a, b;
        optimizer<adamw> dense_opt, ct_opt(mode);
        a.attach(dense_opt, base);
        b.attach(ct_opt, base);
        for (int t = 0; t < 5; ++t) {
            a.new_gradients();
            b.new_gradients();
            dense_opt.step();
            ct_opt.step();
        }
        CHECK(a.head == b.head);
        CHECK(a.w0 != b.w0);
    }
}

TEST_CASE("Learning-rate changes between steps take effect at the next step", "[optimizer][groups]") {
    optimizer<adamw> opt(bernoulli{0.5, 3});
    std::vector<double> p(500), g(500);
    std::mt19937 rng(2);
    std::normal_distribution<double> n;
    for (auto& x : p) x = n(rng);
    auto ref_p = p;
    const auto grp = opt.add_group("encoder", base);
    opt.add_parameter(grp, "layer.0.weight", p, g);
    reference::legacy_adamw<double> ref(base.lr, base.beta1, base.beta2, base.eps, base.weight_decay);
    for (int t = 0; t < 12; ++t) {
        const double lr = base.lr / (1 + t);
        opt.set_lr(lr);
        ref.lr = lr;
        for (auto& x : g) x = 0.1 * n(rng);
        std::vector<bool> keep(p.size());
        const auto view = bernoulli{0.5, 3}.view(stable_tensor_key("layer.0.weight"), static_cast<std::uint64_t>(t));
        for (std::size_t i = 0; i < p.size(); ++i) keep[i] = view.keep(i);
        ref.apply(ref_p, g, keep, 0.5, {});
        opt.step();
        CHECK(opt.group_options(grp).lr == lr);
    }
    for (std::size_t i = 0; i < p.size(); ++i) REQUIRE(p[i] == Approx(ref_p[i]).epsilon(1e-12));
}

TEST_CASE("save -> load -> continue equals an uninterrupted run bit for bit", "[optimizer][state]") {
    const std::vector<mask_mode> modes = {dense{}, bernoulli{0.3, 0xABCDEF}, fixed{masks_for_model(0.25)}};
    for (const auto& mode : modes)
        for (int save_at : {0, 1, 7}) {
            CAPTURE(mode.index(), save_at);
            model straight, resumed;
            optimizer<adamw> a(mode);
            straight.attach(a, base);
            std::string saved;
            {
                optimizer<adamw> first_half(mode);
                resumed.attach(first_half, base);
                for (int t = 0; t < save_at; ++t) {
                    resumed.new_gradients();
                    first_half.step();
                }
                first_half.set_lr(0, 0.5 * base.lr); // a scheduler's change must survive
                saved = state_of(first_half);
            }
            for (int t = 0; t < save_at; ++t) {
                straight.new_gradients();
                a.step();
            }
            a.set_lr(0, 0.5 * base.lr);

            optimizer<adamw> b; // built as a fresh process would: dense, default lr
            b.add_group("encoder", adamw::options{}, true);
            b.add_group("head", adamw::options{}, false);
            b.add_parameter(0, "layer.0.weight", resumed.w0, resumed.g0);
            b.add_parameter(0, "layer.0.bias", resumed.w1, resumed.g1);
            b.add_parameter(1, "head.weight", resumed.head, resumed.ghead);
            std::stringstream in(saved);
            b.load(in);
            CHECK(b.step_count() == static_cast<std::uint64_t>(save_at));
            CHECK(b.group_options(0) == a.group_options(0));
            CHECK(b.group_options(1) == a.group_options(1));
            CHECK(b.mask().index() == mode.index());
            for (int t = save_at; t < 12; ++t) {
                straight.new_gradients();
                resumed.new_gradients();
                a.step();
                b.step();
            }
            REQUIRE(straight.snapshot() == resumed.snapshot());
            REQUIRE(state_of(a) == state_of(b));
        }
}

TEST_CASE("SGD momentum state survives save/load", "[optimizer][state]") {
    const sgd::options o{.lr = 0.05, .momentum = 0.9, .nesterov = true};
    model straight, resumed;
    optimizer<sgd> a(bernoulli{0.5, 1}), b(bernoulli{0.5, 1});
    straight.attach(a, o);
    resumed.attach(b, o);
    for (int t = 0; t < 3; ++t) {
        straight.new_gradients();
        resumed.new_gradients();
        a.step();
        b.step();
    }
    optimizer<sgd> c;
    model& m = resumed;
    m.attach(c, o);
    std::stringstream ss(state_of(b));
    c.load(ss);
    for (int t = 0; t < 3; ++t) {
        straight.new_gradients();
        m.new_gradients();
        a.step();
        c.step();
    }
    CHECK(straight.snapshot() == m.snapshot());
}

TEST_CASE("state files: truncated, corrupt, foreign or mismatched files are refused and change nothing",
          "[optimizer][state][errors]") {
    model m;
    optimizer<adamw> opt(bernoulli{0.3, 5});
    m.attach(opt, base);
    m.new_gradients();
    opt.step();
    const std::string good = state_of(opt);
    m.new_gradients();
    opt.step(); // now differs from `good`

    for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{40}, good.size() / 2, good.size() - 1})
        require_rejected(opt, m, [&] { std::stringstream in(good.substr(0, cut)); opt.load(in); },
                         {"optimizer state"});
    std::string edited = good;
    edited[good.size() / 2] = static_cast<char>(edited[good.size() / 2] ^ 1);
    require_rejected(opt, m, [&] { std::stringstream in(edited); opt.load(in); }, {"optimizer state"});
    require_rejected(opt, m, [&] { std::stringstream in(std::string(200, 'x')); opt.load(in); }, {"bad magic"});
    // A second file glued behind the first, under one checksum over both.
    const std::string glued = "optimizer state is corrupt: " + std::to_string(good.size() + 8) + " bytes follow its checksum";
    require_rejected(opt, m,
                     [&] {
                         std::stringstream in(test_support::with_bytes_after_checksum(good, good));
                         opt.load(in);
                     },
                     {glued.c_str()});

    std::stringstream sgd_state;
    {
        model other;
        optimizer<sgd> s;
        other.attach(s, sgd::options{});
        s.save(sgd_state);
    }
    require_rejected(opt, m, [&] { opt.load(sgd_state); }, {"'sgd' optimizer"});

    optimizer<adamw> smaller;
    std::vector<float> p(3000), g(3000);
    smaller.add_group("encoder", base);
    smaller.add_group("head", base, false);
    smaller.add_parameter(0, "layer.0.weight", p, g);
    std::stringstream in(good);
    CHECK_THROWS_WITH(smaller.load(in), Catch::Contains("3 tensors, this optimizer has 1"));
}

TEST_CASE("Bad hyperparameters are rejected naming the group, and change nothing", "[optimizer][errors]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    auto bad = base;
    bad.lr = -1;
    require_rejected(opt, m, [&] { opt.set_group_options(0, bad); }, {"group 'encoder'", "lr"});
    require_rejected(opt, m, [&] { opt.set_lr(std::numeric_limits<double>::quiet_NaN()); }, {"group 'encoder'", "lr"});
    bad = base;
    bad.beta1 = 1.0;
    require_rejected(opt, m, [&] { opt.set_group_options(1, bad); }, {"group 'head'", "beta1"});
    bad = base;
    bad.beta2 = -0.1;
    require_rejected(opt, m, [&] { opt.add_group("extra", bad); }, {"group 'extra'", "beta2"});
    bad = base;
    bad.eps = -1e-8;
    require_rejected(opt, m, [&] { opt.add_group("extra", bad); }, {"group 'extra'", "eps"});
    bad = base;
    bad.weight_decay = std::numeric_limits<double>::infinity();
    require_rejected(opt, m, [&] { opt.add_group("extra", bad); }, {"weight_decay"});
    require_rejected(opt, m, [&] { opt.add_group("encoder", base); }, {"group 'encoder' added twice"});
    require_rejected(opt, m, [&] { opt.set_lr(7, 0.1); }, {"group index 7 is out of range"});
    require_rejected(opt, m, [&] { (void)opt.group_index("decoder"); }, {"no group named 'decoder'"});
    require_rejected(opt, m, [&] { opt.set_mask(bernoulli{0.0}); }, {"outside (0, 1]"});
    require_rejected(opt, m, [&] { opt.set_mask(bernoulli{1.5}); }, {"outside (0, 1]"});
    CHECK_THROWS_WITH(optimizer<adamw>(bernoulli{2.0}), Catch::Contains("outside (0, 1]"));
}

TEST_CASE("Bad tensors are rejected naming group and tensor, and change nothing", "[optimizer][errors]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    std::vector<float> p(10), g(9), p2(10), g2(10);
    require_rejected(opt, m, [&] { opt.add_parameter(0, "layer.1.weight", p, g); },
                     {"group 'encoder', tensor 'layer.1.weight'", "gradient has 9 elements, parameter has 10"});
    require_rejected(opt, m, [&] { opt.add_parameter(0, "layer.0.weight", p2, g2); }, {"'layer.0.weight'", "registered twice"});
    std::vector<float> g3000(3000);
    require_rejected(opt, m, [&] { opt.add_parameter(1, "alias", m.w0, g3000); },
                     {"tensor 'alias'", "overlaps tensor 'layer.0.weight'"});
    require_rejected(opt, m,
                     [&] { opt.add_parameter<float>(0, "self", tensor_view<float>(p2.data(), 10), tensor_view<const float>(p2.data(), 10)); },
                     {"tensor 'self'", "parameter and gradient memory overlap"});
    require_rejected(opt, m,
                     [&] { opt.add_parameter(0, "keyed", p2, g2, stable_tensor_key("layer.0.weight")); },
                     {"tensor 'keyed'", "collides with tensor 'layer.0.weight'"});
    require_rejected(opt, m, [&] { opt.add_parameter(0, "", p2, g2); }, {"name must not be empty"});
    require_rejected(opt, m, [&] { opt.add_parameter(5, "x", p2, g2); }, {"group index 5"});
    std::vector<double> wrong(3000), gwrong(3000);
    require_rejected(opt, m, [&] { opt.rebind<double>("layer.0.weight", wrong, gwrong); }, {"float32 tensor to float64"});
}

TEST_CASE("A mask built for a different parameter set is refused, and changes nothing", "[optimizer][errors]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    m.new_gradients();
    opt.step();

    auto missing = masks_for_model(0.3);
    mask_set only_one;
    only_one.add("layer.0.weight", *missing.find("layer.0.weight"));
    require_rejected(opt, m, [&] { opt.set_mask(fixed{only_one}); }, {"no mask for tensor 'layer.0.bias'"});

    mask_set wrong_size;
    wrong_size.add("layer.0.weight", bit_mask(2999));
    wrong_size.add("layer.0.bias", bit_mask(129));
    require_rejected(opt, m, [&] { opt.set_mask(fixed{wrong_size}); }, {"'layer.0.weight'", "2999 elements"});

    auto extra = masks_for_model(0.3);
    extra.add("decoder.weight", bit_mask(5));
    opt.set_mask(fixed{extra}); // covers every masked tensor; the stranger is found at the step
    const std::string before = m.snapshot();
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("'decoder.weight' is not registered"));
    CHECK(m.snapshot() == before);
    CHECK(opt.step_count() == 1);

    auto head_masked = masks_for_model(0.3);
    head_masked.add("head.weight", bit_mask(10));
    opt.set_mask(fixed{head_masked});
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("'head.weight' is in unmasked group 'head'"));

    // A tensor added later to a masked group needs a mask entry too.
    opt.set_mask(fixed{masks_for_model(0.3)});
    std::vector<float> p(4), g(4);
    require_rejected(opt, m, [&] { opt.add_parameter(0, "layer.9.weight", p, g); }, {"no mask for tensor 'layer.9.weight'"});
}

TEST_CASE("NaN/Inf gradients: raise, skip or pass through, as configured", "[optimizer][nonfinite]") {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        SECTION("raise (default) names the tensor and changes nothing") {
            model m;
            optimizer<adamw> opt(bernoulli{0.5, 1});
            m.attach(opt, base);
            m.new_gradients();
            opt.step();
            m.new_gradients();
            m.g1[100] = bfloat16(bad);
            require_rejected(opt, m, [&] { opt.step(); }, {"tensor 'layer.0.bias'", "NaN or Inf"});
        }
        SECTION("skip reports the first offending tensor and changes nothing") {
            model m;
            optimizer<adamw> opt(bernoulli{0.5, 1}, {.on_nonfinite = nonfinite_policy::skip});
            m.attach(opt, base);
            m.new_gradients();
            m.g0[2999] = bad;
            m.ghead[0] = bad;
            const std::string before = state_of(opt), params = m.snapshot();
            const auto result = opt.step();
            CHECK_FALSE(result.applied);
            CHECK(result.nonfinite_tensor == "layer.0.weight");
            CHECK(state_of(opt) == before);
            CHECK(m.snapshot() == params);
            m.g0[2999] = 0.0f;
            m.ghead[0] = 0.0;
            CHECK(opt.step().applied);
            CHECK(opt.step_count() == 1);
        }
        SECTION("unchecked does not scan") {
            model m;
            optimizer<adamw> opt(dense{}, {.on_nonfinite = nonfinite_policy::unchecked});
            m.attach(opt, base);
            m.new_gradients();
            m.g0[0] = bad;
            CHECK(opt.step().applied);
            CHECK(std::isnan(m.w0[0]));
        }
    }
}

TEST_CASE("state precision, empty tensors, rebinding and introspection", "[optimizer]") {
    std::vector<float> p(100, 1.0f), g(100, 0.5f), empty_p, empty_g;
    optimizer<adamw> f32;
    optimizer<adamw> f64(dense{}, {.precision = state_precision::float64});
    for (auto* opt : {&f32, &f64}) {
        opt->add_group("g", base);
        opt->add_parameter(0, "w", p, g);
        opt->add_parameter(0, "nothing", empty_p, empty_g);
        opt->step();
    }
    CHECK(f32.state_bytes() == 2 * 100 * 4);
    CHECK(f64.state_bytes() == 2 * 100 * 8);
    CHECK(f32.tensor_names() == std::vector<std::string>{"w", "nothing"});
    CHECK(f32.group_index("g") == 0);
    CHECK(f32.group_name(0) == "g");
    CHECK(f32.group_masked(0));

    std::vector<float> p2 = p, g2 = g;
    f32.rebind<float>("w", p2, g2);
    const float before = p2[0];
    f32.step();
    CHECK(p2[0] != before);
    CHECK_THROWS_WITH(f32.rebind<float>("v", p2, g2), Catch::Contains("no tensor named 'v'"));
}

TEST_CASE("Tensors whose gradient is absent are skipped, as LibTorch skips undefined grads", "[optimizer]") {
    // A steps x and y together, but y has no gradient at the second step; B steps x
    // every time, C steps y only when it has a gradient. A must equal B and C.
    std::vector<float> ax(300, 1.0f), ay(70, -1.0f), gx(300), gy(70);
    std::vector<float> bx = ax, cy = ay;
    optimizer<adamw> a(bernoulli{0.5, 9}), b(bernoulli{0.5, 9}), c(bernoulli{0.5, 9});
    for (auto* o : {&a, &b, &c}) o->add_group("encoder", base);
    a.add_parameter(0, "x", ax, gx);
    a.add_parameter(0, "y", ay, gy);
    b.add_parameter(0, "x", bx, gx);
    c.add_parameter(0, "y", cy, gy);
    std::mt19937 rng(8);
    std::normal_distribution<float> n(0.0f, 0.1f);
    for (int t = 0; t < 3; ++t) {
        for (auto& v : gx) v = n(rng);
        for (auto& v : gy) v = n(rng);
        const bool y_has_grad = t != 1;
        if (y_has_grad) a.rebind<float>(a.tensor_index("y"), ay, gy);
        else a.clear_gradient(a.tensor_index("y"));
        CHECK(a.has_gradient(1) == y_has_grad);
        a.step();
        b.step();
        // C's Bernoulli step counter must follow A's, so it steps (and skips) alike.
        if (y_has_grad) c.rebind<float>(0, cy, gy);
        else c.clear_gradient(0);
        c.step();
    }
    CHECK(ax == bx);
    CHECK(ay == cy);
    CHECK_THROWS_WITH(a.clear_gradient(2), Catch::Contains("tensor index 2 is out of range"));

    // Registered before its gradient exists: skipped until rebound.
    std::vector<float> late(5, 1.0f), late_grad(5, 1.0f);
    a.add_parameter<float>(0, "late", late);
    CHECK_FALSE(a.has_gradient(2));
    a.step();
    CHECK(late == std::vector<float>(5, 1.0f));
    CHECK_THROWS_WITH(a.rebind<float>(2, late, tensor_view<const float>(nullptr, 5)), Catch::Contains("null gradient"));
    CHECK_THROWS_WITH(a.add_parameter<float>(0, "nullgrad", late_grad, tensor_view<const float>(nullptr, 5)),
                      Catch::Contains("null gradient"));
    a.rebind<float>(2, late, late_grad);
    a.step();
    CHECK(late != std::vector<float>(5, 1.0f));
}

TEST_CASE("compact Child-Tuning_D state gives the full-state results bit for bit", "[optimizer][compact]") {
    for (auto flavour : {adamw_flavour::torch, adamw_flavour::legacy})
        for (bool decay_masked : {true, false}) {
            CAPTURE(static_cast<int>(flavour), decay_masked);
            auto o = base;
            o.flavour = flavour;
            const auto masks = masks_for_model(0.3);
            model full, compact;
            optimizer<adamw> a(fixed{masks}, {.masking = {mask_target::gradient, decay_masked}});
            optimizer<adamw> b(fixed{masks}, {.masking = {mask_target::gradient, decay_masked}, .compact_fixed_state = true});
            full.attach(a, o);
            compact.attach(b, o);
            for (int t = 0; t < 20; ++t) {
                full.new_gradients();
                compact.new_gradients();
                a.step();
                b.step();
            }
            REQUIRE(full.snapshot() == compact.snapshot());
            // 3000 float + 129 bfloat16 masked parameters (fp32 state) and 10 dense double ones.
            const std::size_t kept = masks.total_kept();
            CHECK(b.state_bytes() == 2 * 4 * kept + 2 * 8 * 10);
            CHECK(a.state_bytes() == 2 * 4 * 3129 + 2 * 8 * 10);

            // Resume from a compact state file.
            std::stringstream saved;
            b.save(saved);
            model resumed = compact;
            optimizer<adamw> c(fixed{masks}, {.masking = {mask_target::gradient, decay_masked}, .compact_fixed_state = true});
            resumed.attach(c, o);
            c.load(saved);
            for (int t = 0; t < 5; ++t) {
                compact.new_gradients();
                resumed.new_gradients();
                b.step();
                c.step();
            }
            REQUIRE(compact.snapshot() == resumed.snapshot());
        }
}

TEST_CASE("compact state: what it needs is checked, and the mask cannot change under it", "[optimizer][compact][errors]") {
    CHECK_THROWS_WITH(optimizer<sgd>(dense{}, {.compact_fixed_state = true}), Catch::Contains("'sgd' rule cannot keep compact"));
    const auto masks = masks_for_model(0.3);
    {
        model m;
        optimizer<adamw> opt(fixed{masks}, {.masking = {mask_target::update, true}, .compact_fixed_state = true});
        m.attach(opt, base);
        m.new_gradients();
        require_rejected(opt, m, [&] { opt.step(); }, {"group 'encoder'", "mask on the gradient and eps > 0"});
    }
    {
        model m;
        auto o = base;
        o.eps = 0.0;
        optimizer<adamw> opt(fixed{masks}, {.compact_fixed_state = true});
        m.attach(opt, o);
        m.new_gradients();
        require_rejected(opt, m, [&] { opt.step(); }, {"eps > 0"});
    }
    model m;
    optimizer<adamw> opt(fixed{masks}, {.compact_fixed_state = true});
    m.attach(opt, base);
    m.new_gradients();
    opt.step();
    CHECK_NOTHROW(opt.set_mask(fixed{masks_for_model(0.3)})); // the same bits
    require_rejected(opt, m, [&] { opt.set_mask(fixed{masks_for_model(0.5)}); }, {"compact Child-Tuning_D state", "cannot change"});
    require_rejected(opt, m, [&] { opt.set_mask(dense{}); }, {"cannot change"});

    // Tensors that stepped with full state before the fixed mask keep full state.
    model n, ref;
    optimizer<adamw> late(dense{}, {.compact_fixed_state = true}), full(dense{});
    n.attach(late, base);
    ref.attach(full, base);
    for (int t = 0; t < 6; ++t) {
        if (t == 3) {
            late.set_mask(fixed{masks});
            full.set_mask(fixed{masks});
        }
        n.new_gradients();
        ref.new_gradients();
        late.step();
        full.step();
    }
    CHECK(n.snapshot() == ref.snapshot());
    CHECK(late.state_bytes() == full.state_bytes());
}

// ---- bad-input sweep (docs/reliability.md, "Bad input") ---------------------------

TEST_CASE("bad input: aliasing parameter and gradient memory is refused, and changes nothing",
          "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    std::vector<float> buf(64), g(32);
    const auto view = [&](std::size_t first, std::size_t n) { return tensor_view<float>(buf.data() + first, n); };
    const auto cview = [&](std::size_t first, std::size_t n) { return tensor_view<const float>(buf.data() + first, n); };
    require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "half", view(0, 32), cview(16, 32)); },
                     {"tensor 'half'", "parameter and gradient memory overlap"});
    require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "last", view(0, 32), cview(31, 32)); },
                     {"tensor 'last'", "parameter and gradient memory overlap"});
    require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "before", view(16, 32), cview(0, 32)); },
                     {"tensor 'before'", "parameter and gradient memory overlap"});
    // Another tensor's parameter, seen through a different element type.
    require_rejected(opt, m,
                     [&] {
                         opt.add_parameter<bfloat16>(0, "punned", tensor_view<bfloat16>(reinterpret_cast<bfloat16*>(m.w0.data() + 10), 4),
                                                     tensor_view<const bfloat16>(reinterpret_cast<const bfloat16*>(g.data()), 4));
                     },
                     {"tensor 'punned'", "overlaps tensor 'layer.0.weight'"});
    require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "reads_w0", view(0, 10), tensor_view<const float>(m.w0.data(), 10)); },
                     {"tensor 'reads_w0'", "gradient memory overlaps the parameter of tensor 'layer.0.weight'"});
    // rebind checks the same, by name and by index.
    require_rejected(opt, m, [&] { opt.rebind<float>("layer.0.weight", m.w0, m.w0); },
                     {"tensor 'layer.0.weight'", "parameter and gradient memory overlap"});
    require_rejected(opt, m,
                     [&] {
                         opt.rebind<bfloat16>(1, m.w1, tensor_view<const bfloat16>(reinterpret_cast<const bfloat16*>(m.w0.data()), 129));
                     },
                     {"tensor 'layer.0.bias'", "gradient memory overlaps the parameter of tensor 'layer.0.weight'"});
    require_rejected(opt, m, [&] { opt.rebind<double>(2, tensor_view<double>(reinterpret_cast<double*>(m.w0.data()), 10), m.ghead); },
                     {"tensor 'head.weight'", "overlaps tensor 'layer.0.weight'"});
    // Adjacent, not overlapping: accepted.
    CHECK_NOTHROW(opt.add_parameter<float>(0, "adjacent", view(0, 32), cview(32, 32)));
}

TEST_CASE("bad input: sizes near the index limits are refused before any arithmetic wraps",
          "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    // Made-up views: never dereferenced, because they are rejected first.
    std::vector<float> p(4), g(4);
    std::vector<double> pd(4), gd(4);
    for (const std::size_t n : {detail::max_tensor_elements<float> + 1, std::numeric_limits<std::size_t>::max() / 4 + 1,
                                std::numeric_limits<std::size_t>::max()}) {
        INFO("n = " << n);
        require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "huge", tensor_view<float>(p.data(), n), tensor_view<const float>(g.data(), n)); },
                         {"tensor 'huge'", "elements of float32 exceed the address space"});
        require_rejected(opt, m, [&] { opt.add_parameter<float>(0, "huge_lazy", tensor_view<float>(p.data(), n)); },
                         {"tensor 'huge_lazy'", "exceed the address space"});
    }
    const std::size_t nd = detail::max_tensor_elements<double> + 1;
    require_rejected(opt, m, [&] { opt.add_parameter<double>(1, "huge64", tensor_view<double>(pd.data(), nd), tensor_view<const double>(gd.data(), nd)); },
                     {"elements of float64 exceed the address space"});
    // A registered tensor cannot be rebound to a made-up size either.
    require_rejected(opt, m, [&] { opt.rebind<float>(0, tensor_view<float>(p.data(), std::numeric_limits<std::size_t>::max()), tensor_view<const float>(g.data(), std::numeric_limits<std::size_t>::max())); },
                     {"cannot rebind 3000 elements"});
}

TEST_CASE("bad input: NaN, Inf and out-of-range hyperparameters and options are refused",
          "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    struct field {
        const char* name;
        double adamw::options::*member;
    };
    for (const field f : {field{"lr", &adamw::options::lr}, field{"beta1", &adamw::options::beta1},
                          field{"beta2", &adamw::options::beta2}, field{"eps", &adamw::options::eps},
                          field{"weight_decay", &adamw::options::weight_decay}})
        for (const double v : {nan, inf, -inf, -1e-300}) {
            INFO(f.name << " = " << v);
            auto bad = base;
            bad.*f.member = v;
            require_rejected(opt, m, [&] { opt.add_group("extra", bad); }, {"group 'extra'", f.name});
            require_rejected(opt, m, [&] { opt.set_group_options(0, bad); }, {"group 'encoder'", f.name});
        }
    require_rejected(opt, m, [&] { opt.set_lr(0, inf); }, {"group 'encoder'", "lr"});
    require_rejected(opt, m, [&] { opt.set_lr(-inf); }, {"group 'encoder'", "lr"});
    auto flavour = base;
    flavour.flavour = static_cast<adamw_flavour>(7);
    require_rejected(opt, m, [&] { opt.add_group("extra", flavour); }, {"group 'extra'", "unknown AdamW flavour"});
    // Edges that are valid: zero (and negative zero) rates, betas at 0 and just below 1, eps = 0.
    auto edge = base;
    edge.lr = -0.0;
    edge.beta1 = 0.0;
    edge.beta2 = std::nextafter(1.0, 0.0);
    edge.eps = 0.0;
    edge.weight_decay = -0.0;
    CHECK_NOTHROW(opt.set_group_options(0, edge));

    optimizer<sgd> s;
    for (const double v : {nan, inf, -1.0}) {
        CHECK_THROWS_WITH(s.add_group("g", {.lr = 0.1, .momentum = v}), Catch::Contains("group 'g'") && Catch::Contains("momentum"));
        CHECK_THROWS_WITH(s.add_group("g", {.lr = 0.1, .dampening = v}), Catch::Contains("dampening"));
        CHECK_THROWS_WITH(s.add_group("g", {.lr = v}), Catch::Contains("lr"));
    }
    CHECK(s.group_count() == 0);

    CHECK_THROWS_WITH(optimizer<adamw>(dense{}, {.masking = {static_cast<mask_target>(9), true}}), Catch::Contains("unknown mask target"));
    CHECK_THROWS_WITH(optimizer<adamw>(dense{}, {.on_nonfinite = static_cast<nonfinite_policy>(9)}),
                      Catch::Contains("unknown nonfinite policy"));
    CHECK_THROWS_WITH(optimizer<adamw>(dense{}, {.precision = static_cast<state_precision>(9)}),
                      Catch::Contains("unknown state precision"));
}

TEST_CASE("bad input: Bernoulli p at the edges of its range (0 excluded, 1 included) and beyond", "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt(bernoulli{0.3, 1});
    m.attach(opt, base);
    m.new_gradients();
    opt.step();
    for (const double p : {0.0, -0.0, std::nextafter(1.0, 2.0), std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity(), -1.0}) {
        INFO("p = " << p);
        require_rejected(opt, m, [&] { opt.set_mask(bernoulli{p, 1}); }, {"bernoulli mask", "outside (0, 1]"});
        CHECK_THROWS_WITH(optimizer<adamw>(bernoulli{p}), Catch::Contains("outside (0, 1]"));
    }
    // Positive but below the 32-bit threshold's resolution (definition 1): kept
    // gradients would be divided by p while the keep rate stays 2^-32 (Inf in
    // float state for the tiniest).
    for (const double p : {std::numeric_limits<double>::denorm_min(), 1e-300, bernoulli::min_p / 2, std::nextafter(bernoulli::min_p, 0.0)}) {
        INFO("p = " << p);
        require_rejected(opt, m, [&] { opt.set_mask(bernoulli{p, 1, 1}); }, {"bernoulli mask", "below 2^-32"});
    }
    // ... and definitions 3 and 4 (the default), which have the same 32-bit threshold.
    for (const double p : {bernoulli::min_p / 2, std::nextafter(bernoulli::min_p, 0.0)}) {
        INFO("p = " << p);
        require_rejected(opt, m, [&] { opt.set_mask(bernoulli{p, 1}); }, {"bernoulli mask", "below 2^-32"});
    }
    // Definition 2 counts p in units of 2^-16: below one unit is refused.
    for (const double p : {bernoulli::min_p, 1e-5, std::nextafter(bernoulli::min_p_v2, 0.0)}) {
        INFO("p = " << p);
        require_rejected(opt, m, [&] { opt.set_mask(bernoulli{p, 1, 2}); }, {"bernoulli mask", "below 2^-16"});
    }
    for (const double p : {bernoulli::min_p / 2, std::nextafter(bernoulli::min_p, 0.0)}) {
        INFO("p = " << p << ", definition 3");
        require_rejected(opt, m, [&] { opt.set_mask(bernoulli{p, 1, 3}); }, {"bernoulli mask", "below 2^-32"});
    }
    require_rejected(opt, m, [&] { opt.set_mask(bernoulli{0.5, 1, 5}); }, {"bernoulli mask", "definition version = 5"});
    // The edges themselves are valid, and steps under them keep the parameters finite.
    for (const bernoulli& b : {bernoulli{bernoulli::min_p, 1, 1}, bernoulli{bernoulli::min_p_v2, 1, 2}, bernoulli{bernoulli::min_p, 1, 3},
                               bernoulli{bernoulli::min_p, 1, 4}, bernoulli{1.0, 1}}) {
        INFO("p = " << b.p << ", definition " << b.version);
        opt.set_mask(b);
        m.new_gradients();
        opt.step();
        for (const float w : m.w0) REQUIRE(std::isfinite(w));
    }
}

TEST_CASE("bad input: empty optimizers, empty groups and empty tensors step and save (allow_empty)", "[optimizer][bad_input]") {
    // Since 0.3 both are refused unless optimizer_options::allow_empty (see the
    // "no silent no-ops" case); with it they step as before.
    const optimizer_options allow{.allow_empty = true};
    optimizer<adamw> none(dense{}, allow);
    CHECK(none.step().applied);
    CHECK(none.step_count() == 1);
    std::stringstream state;
    none.save(state);
    optimizer<adamw> none2(dense{}, allow);
    none2.load(state);
    CHECK(none2.step_count() == 1);

    // A group without tensors, and tensors of no element (null data) under every mask.
    for (const mask_mode& mode : {mask_mode{dense{}}, mask_mode{bernoulli{0.5, 2}}, mask_mode{fixed{}}}) {
        optimizer<adamw> opt(mode, allow);
        opt.add_group("empty", base);
        opt.add_group("dense", base, false);
        opt.add_parameter<float>(1, "zero", tensor_view<float>(nullptr, 0), tensor_view<const float>(nullptr, 0));
        opt.add_parameter<float>(1, "zero_lazy", tensor_view<float>(nullptr, 0));
        CHECK(opt.step().applied);
        CHECK(opt.state_bytes() == 0);
    }
    // A masked tensor of no element still needs its (empty) mask.
    optimizer<adamw> opt(fixed{});
    opt.add_group("enc", base);
    CHECK_THROWS_WITH(opt.add_parameter<float>(0, "zero", tensor_view<float>(nullptr, 0), tensor_view<const float>(nullptr, 0)),
                      Catch::Contains("no mask for tensor 'zero'"));
    CHECK(opt.tensor_count() == 0);
    // Indexes and names that do not exist.
    CHECK_THROWS_WITH(opt.has_gradient(0), Catch::Contains("tensor index 0 is out of range (0 tensors)"));
    CHECK_THROWS_WITH(opt.rebind<float>(std::size_t{3}, tensor_view<float>(), tensor_view<const float>()),
                      Catch::Contains("tensor index 3 is out of range"));
    CHECK_THROWS_WITH(opt.group_name(1), Catch::Contains("group index 1 is out of range (1 groups)"));
    CHECK_THROWS_WITH(opt.tensor_index("w"), Catch::Contains("no tensor named 'w'"));
    CHECK_THROWS_WITH(opt.add_group("", base), Catch::Contains("group name must not be empty"));
}

TEST_CASE("bad input: a mask with the right count but a wrong name is refused", "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt;
    m.attach(opt, base);
    const auto good = masks_for_model(0.3);
    mask_set renamed;
    renamed.add("layer.0.weight", *good.find("layer.0.weight"));
    renamed.add("layer.0.biaz", *good.find("layer.0.bias"));
    require_rejected(opt, m, [&] { opt.set_mask(fixed{renamed}); }, {"no mask for tensor 'layer.0.bias'"});
    CHECK_THROWS_WITH(optimizer<adamw>(fixed{renamed}).add_group("", base), Catch::Contains("must not be empty"));
}

// ---- slices (add_parameter_slice) and reserved state (reserve_state) ----------------

namespace {
//! Boundaries of the model's tensors cut into slices: slice k of a tensor is
//! elements [cut[k], cut[k + 1]).
struct slice_cuts {
    std::vector<std::size_t> w0, w1, head;
};

template <class Rule, class T>
void add_slice(optimizer<Rule>& opt, std::size_t group, const std::string& name, std::vector<T>& p,
               const std::vector<T>& g, std::size_t begin, std::size_t end) {
    opt.add_parameter_slice(group, name, p.size(), begin, tensor_view<T>(p.data() + begin, end - begin),
                            tensor_view<const T>(g.data() + begin, end - begin));
}

//! What model::attach registers, but only slice k of each tensor.
template <class Rule>
void attach_slice(optimizer<Rule>& opt, model& m, const typename Rule::options& o, const slice_cuts& c, std::size_t k) {
    const auto enc = opt.add_group("encoder", o, true);
    auto head_options = o;
    head_options.lr *= 10;
    const auto hd = opt.add_group("head", head_options, false);
    add_slice(opt, enc, "layer.0.weight", m.w0, m.g0, c.w0[k], c.w0[k + 1]);
    add_slice(opt, enc, "layer.0.bias", m.w1, m.g1, c.w1[k], c.w1[k + 1]);
    add_slice(opt, hd, "head.weight", m.head, m.ghead, c.head[k], c.head[k + 1]);
}
} // namespace

TEST_CASE("slices: a tensor split across optimizers steps bit for bit as the whole tensor", "[optimizer][slice]") {
    // Cuts off the 64-element mask words, a one-element slice and empty slices
    // (an optimizer whose share misses a tensor still registers it).
    const std::vector<slice_cuts> layouts{{{0, 777, 2050, 3000}, {0, 0, 65, 129}, {0, 10, 10, 10}},
                                          {{0, 1, 3000}, {0, 100, 129}, {0, 3, 10}}};
    const auto masks = masks_for_model(0.3);
    // Bernoulli slices starting off a 128-element group fetch their keep words
    // between passes; the whole tensor draws them inside the pass (exec/kernel.hpp).
    for (const mask_mode& mode : {mask_mode{dense{}}, mask_mode{bernoulli{0.3, 5}}, mask_mode{bernoulli{0.3, 5, 1}},
                                  mask_mode{fixed{masks}}})
        for (const auto& cuts : layouts) {
            CAPTURE(mode.index(), cuts.w0.size() - 1);
            model whole, sliced;
            optimizer<adamw> ref(mode);
            whole.attach(ref, base);
            std::vector<optimizer<adamw>> parts;
            for (std::size_t k = 0; k + 1 < cuts.w0.size(); ++k) {
                parts.emplace_back(mode);
                attach_slice(parts.back(), sliced, base, cuts, k);
            }
            for (int t = 0; t < 6; ++t) {
                whole.new_gradients();
                sliced.new_gradients();
                ref.step();
                for (auto& p : parts) p.step();
            }
            CHECK(whole.snapshot() == sliced.snapshot());
            std::size_t bytes = 0;
            for (const auto& p : parts) bytes += p.state_bytes();
            CHECK(bytes == ref.state_bytes());
            CHECK(whole.snapshot() != model{}.snapshot());
        }
}

TEST_CASE("slices: save and load resume a sliced optimizer bit for bit", "[optimizer][slice][state]") {
    const slice_cuts cuts{{0, 1000, 3000}, {0, 64, 129}, {0, 10, 10}};
    const mask_mode mode = bernoulli{0.4, 3};
    model straight, resumed;
    optimizer<adamw> a(mode), b(mode);
    attach_slice(a, straight, base, cuts, 1);
    attach_slice(b, resumed, base, cuts, 1);
    for (int t = 0; t < 3; ++t) {
        straight.new_gradients();
        resumed.new_gradients();
        a.step();
        b.step();
    }
    optimizer<adamw> c;
    attach_slice(c, resumed, base, cuts, 1);
    std::stringstream file(state_of(b));
    c.load(file);
    for (int t = 0; t < 3; ++t) {
        straight.new_gradients();
        resumed.new_gradients();
        a.step();
        c.step();
    }
    CHECK(straight.snapshot() == resumed.snapshot());
    // The file holds a slice as a tensor of its own elements: another cut of
    // the same tensor is refused by its size.
    optimizer<adamw> d;
    model other;
    attach_slice(d, other, base, {{0, 1001, 3000}, {0, 64, 129}, {0, 10, 10}}, 1);
    require_rejected(d, other, [&] {
        std::stringstream again(state_of(b));
        d.load(again);
    }, {"tensor 'layer.0.weight'", "has 2000 elements, the parameter has 1999"});
}

TEST_CASE("slices: bad input is refused naming the tensor, and changes nothing", "[optimizer][slice][errors][bad_input]") {
    const auto masks = masks_for_model(0.3);
    model m;
    optimizer<adamw> opt(fixed{masks});
    m.attach(opt, base);
    std::vector<float> p(8), g(8);
    const auto slice = [&](std::string name, std::size_t logical, std::size_t offset, std::size_t n) {
        opt.add_parameter_slice<float>(1, std::move(name), logical, offset, tensor_view<float>(p.data(), n),
                                       tensor_view<const float>(g.data(), n));
    };
    require_rejected(opt, m, [&] { slice("s", 10, 8, 3); }, {"tensor 's'", "slice of 3 elements at offset 8 does not fit in its tensor of 10"});
    require_rejected(opt, m, [&] { slice("s", 10, 11, 0); }, {"tensor 's'", "offset 11 does not fit"});
    require_rejected(opt, m, [&] { slice("s", 4, 0, 8); }, {"tensor 's'", "does not fit in its tensor of 4"});
    const std::size_t huge = std::numeric_limits<std::size_t>::max();
    require_rejected(opt, m, [&] { slice("s", huge, huge, 1); }, {"does not fit"}); // offset + n wraps
    CHECK(opt.tensor_count() == 3);
    slice("s", 10, 2, 8); // the end of its tensor
    CHECK(opt.tensor_count() == 4);

    // A fixed mask covers the logical tensor, not the slice.
    model n;
    optimizer<adamw> masked(fixed{masks});
    masked.add_group("encoder", base);
    require_rejected(masked, n, [&] {
        masked.add_parameter_slice<float>(0, "layer.0.weight", 2999, 0, tensor_view<float>(n.w0.data(), 1000),
                                          tensor_view<const float>(n.g0.data(), 1000));
    }, {"mask of tensor 'layer.0.weight' has 3000 elements, the tensor has 2999"});
    masked.add_parameter_slice<float>(0, "layer.0.weight", 3000, 2000, tensor_view<float>(n.w0.data() + 2000, 1000),
                                      tensor_view<const float>(n.g0.data() + 2000, 1000));
    masked.add_parameter_slice<bfloat16>(0, "layer.0.bias", 129, 0, tensor_view<bfloat16>(n.w1.data(), 0),
                                         tensor_view<const bfloat16>(n.g1.data(), 0));
    mask_set short_mask;
    short_mask.add("layer.0.weight", bit_mask(1000));
    short_mask.add("layer.0.bias", *masks.find("layer.0.bias"));
    require_rejected(masked, n, [&] { masked.set_mask(fixed{short_mask}); }, {"mask of tensor 'layer.0.weight' has 1000 elements, the tensor has 3000"});
    n.new_gradients();
    CHECK(masked.step().applied);

    // Compact Child-Tuning_D state counts kept elements from the tensor's first
    // mask word: whole tensors only.
    optimizer<adamw> compact(fixed{masks}, {.compact_fixed_state = true});
    compact.add_group("encoder", base);
    const auto compact_slice = [&](std::size_t offset, std::size_t count) {
        compact.add_parameter_slice<float>(0, "layer.0.weight", 3000, offset, tensor_view<float>(n.w0.data() + offset, count),
                                           tensor_view<const float>(n.g0.data() + offset, count));
    };
    require_rejected(compact, n, [&] { compact_slice(0, 1000); }, {"tensor 'layer.0.weight'", "whole tensors only"});
    require_rejected(compact, n, [&] { compact_slice(64, 2936); }, {"tensor 'layer.0.weight'", "whole tensors only"});
    require_rejected(compact, n, [&] { compact_slice(0, 0); }, {"tensor 'layer.0.weight'", "whole tensors only"});
    compact_slice(0, 3000); // the whole tensor, registered as a slice
    CHECK(compact.tensor_count() == 1);

    // Nor does a state file's compact state load into a slice.
    std::vector<float> w(100, 1.0f), gw(100, 0.5f);
    mask_set one;
    bit_mask bits(100);
    for (std::size_t i = 0; i < 100; i += 3) bits.set(i, true);
    one.add("t", bits);
    optimizer<adamw> saver(fixed{one}, {.compact_fixed_state = true});
    saver.add_group("encoder", base);
    saver.add_parameter(0, "t", w, gw);
    saver.step();
    optimizer<adamw> loader;
    loader.add_group("encoder", base);
    loader.add_parameter_slice<float>(0, "t", 200, 0, tensor_view<float>(w.data(), 100), tensor_view<const float>(gw.data(), 100));
    require_rejected(loader, n, [&] {
        std::stringstream file(state_of(saver));
        loader.load(file);
    }, {"tensor 't'", "compact state for a slice"});
}

TEST_CASE("reserve_state allocates the next step's state up front and changes no result", "[optimizer][reserve]") {
    const auto masks = masks_for_model(0.3);
    const std::vector<std::pair<mask_mode, optimizer_options>> setups{
        {dense{}, {}}, {bernoulli{0.4, 9}, {}}, {fixed{masks}, {}}, {fixed{masks}, {.compact_fixed_state = true}}};
    for (const auto& [mode, options] : setups) {
        CAPTURE(mode.index(), options.compact_fixed_state);
        model a, b;
        optimizer<adamw> plain(mode, options), reserved(mode, options);
        a.attach(plain, base);
        b.attach(reserved, base);
        const std::string unstepped = state_of(reserved);
        reserved.reserve_state();
        const std::size_t bytes = reserved.state_bytes();
        CHECK(bytes > 0);
        reserved.reserve_state(); // nothing more to reserve
        CHECK(reserved.state_bytes() == bytes);
        CHECK(state_of(reserved) == unstepped); // reserved state is saved once a step uses it
        for (int t = 0; t < 4; ++t) {
            a.new_gradients();
            b.new_gradients();
            plain.step();
            reserved.step();
            CHECK(plain.state_bytes() == bytes);
            CHECK(reserved.state_bytes() == bytes);
        }
        CHECK(a.snapshot() == b.snapshot());
        CHECK(state_of(plain) == state_of(reserved));
    }
}

TEST_CASE("reserve_state: fresh state stays fresh, and a new mask releases the reservation", "[optimizer][reserve]") {
    // SGD's momentum buffer takes its first gradient as is: a reserved buffer is
    // still fresh at the step that first uses it, also after earlier steps.
    model a, b;
    sgd::options o{.lr = 0.05, .momentum = 0.0};
    optimizer<sgd> plain(bernoulli{0.5, 4}), reserved(bernoulli{0.5, 4});
    a.attach(plain, o);
    b.attach(reserved, o);
    for (int t = 0; t < 4; ++t) {
        if (t == 2) {
            o.momentum = 0.9;
            plain.set_group_options(0, o);
            reserved.set_group_options(0, o);
            reserved.reserve_state();
            CHECK(reserved.state_bytes() == 4 * (3000 + 129));
        }
        a.new_gradients();
        b.new_gradients();
        plain.step();
        reserved.step();
    }
    CHECK(a.snapshot() == b.snapshot());
    CHECK(state_of(plain) == state_of(reserved));

    // Compact state reserved for one mask is not used under another.
    const auto first = masks_for_model(0.3), second = masks_for_model(0.6);
    model c, d;
    optimizer<adamw> direct(fixed{second}, {.compact_fixed_state = true}), switched(fixed{first}, {.compact_fixed_state = true});
    c.attach(direct, base);
    d.attach(switched, base);
    switched.reserve_state();
    CHECK(switched.state_bytes() == 2 * 4 * first.total_kept() + 2 * 8 * 10);
    switched.set_mask(fixed{second});
    CHECK(switched.state_bytes() == 0);
    for (int t = 0; t < 3; ++t) {
        c.new_gradients();
        d.new_gradients();
        direct.step();
        switched.step();
    }
    CHECK(c.snapshot() == d.snapshot());
    CHECK(switched.state_bytes() == 2 * 4 * second.total_kept() + 2 * 8 * 10);
}

TEST_CASE("reserve_state on a bad configuration throws and changes nothing", "[optimizer][reserve][errors]") {
    const auto masks = masks_for_model(0.3);
    model m;
    optimizer<adamw> opt(fixed{masks}, {.masking = {mask_target::update, true}, .compact_fixed_state = true});
    m.attach(opt, base);
    require_rejected(opt, m, [&] { opt.reserve_state(); }, {"group 'encoder'", "mask on the gradient and eps > 0"});
    CHECK(opt.state_bytes() == 0);
    // A fixed mask with a tensor nobody registered passes set_mask (each
    // registered tensor has its mask) but not the step's full coverage check.
    mask_set extra = masks;
    extra.add("layer.9.weight", bit_mask(4));
    optimizer<adamw> covered(fixed{masks});
    m.attach(covered, base);
    covered.set_mask(fixed{extra});
    require_rejected(covered, m, [&] { covered.reserve_state(); }, {"tensor 'layer.9.weight' is not registered"});
    CHECK(covered.state_bytes() == 0);
}

TEST_CASE("first_nonfinite_gradient: the check step() makes, for callers that decide first", "[optimizer][nonfinite]") {
    model m;
    optimizer<adamw> opt(dense{}, {.on_nonfinite = nonfinite_policy::unchecked});
    m.attach(opt, base);
    m.new_gradients();
    CHECK_FALSE(opt.first_nonfinite_gradient().has_value());
    m.ghead[9] = std::numeric_limits<double>::infinity();
    m.g1[128] = bfloat16(std::numeric_limits<float>::quiet_NaN());
    CHECK(opt.first_nonfinite_gradient() == std::optional<std::size_t>{1});
    opt.clear_gradient(1); // absent gradients are not checked
    CHECK(opt.first_nonfinite_gradient() == std::optional<std::size_t>{2});
}

TEST_CASE("no silent no-ops: a step without tensors, or with a masked group holding none, is refused unless allow_empty",
          "[optimizer][errors][bad_input]") {
    model m;
    {
        optimizer<adamw> none(bernoulli{0.5, 1});
        CHECK_THROWS_WITH(none.step(), Catch::Contains("no tensor is registered") && Catch::Contains("allow_empty"));
        CHECK(none.step_count() == 0);
        CHECK_THROWS_WITH(none.reserve_state(), Catch::Contains("no tensor is registered"));
    }
    optimizer<adamw> opt(bernoulli{0.5, 1});
    m.attach(opt, base);
    opt.add_group("decoder", base); // masked, but a name filter found no tensor for it
    m.new_gradients();
    require_rejected(opt, m, [&] { opt.step(); },
                     {"group 'decoder' is masked but holds no tensor", "allow_empty"});
    CHECK(opt.step_count() == 0);
    // An empty dense group masks nothing and is fine.
    optimizer<adamw> dense_empty(bernoulli{0.5, 1});
    m.attach(dense_empty, base);
    dense_empty.add_group("frozen", base, false);
    CHECK(dense_empty.step().applied);
    // Opted in: the step runs, as before 0.3.
    model m2;
    optimizer<adamw> opted(bernoulli{0.5, 1}, optimizer_options{.allow_empty = true});
    m2.attach(opted, base);
    opted.add_group("decoder", base);
    m2.new_gradients();
    CHECK(opted.step().applied);
    CHECK(opted.step_count() == 1);
}

TEST_CASE("errors carry the exact value and name the group", "[optimizer][errors][bad_input]") {
    model m;
    optimizer<adamw> opt(bernoulli{0.5, 1});
    m.attach(opt, base);
    const double above_one = std::nextafter(1.0, 2.0);
    require_rejected(opt, m, [&] { opt.set_mask(bernoulli{above_one, 1}); },
                     {"p = 1.0000000000000002 is outside (0, 1]"});
    require_rejected(opt, m, [&] { opt.set_lr(0, -1e-300); }, {"group 'encoder': lr = -1e-300 must be finite and >= 0"});
    require_rejected(opt, m, [&] { opt.set_lr(1, -0.1); }, {"group 'head': lr = -0.1 must be"});
    auto bad = base;
    bad.beta2 = 1.0 + 0x1p-52;
    require_rejected(opt, m, [&] { opt.set_group_options(1, bad); }, {"group 'head': beta2 = 1.0000000000000002 must be in [0, 1)"});
    // A state file's tensor of another size: the group, the tensor and both sizes.
    optimizer<adamw> other(bernoulli{0.5, 1});
    std::vector<float> p(2999), g(2999);
    std::vector<bfloat16> pb(129), gb(129);
    std::vector<double> ph(10), gh(10);
    other.add_group("encoder", base);
    other.add_group("head", base, false);
    other.add_parameter(0, "layer.0.weight", p, g);
    other.add_parameter(0, "layer.0.bias", pb, gb);
    other.add_parameter(1, "head.weight", ph, gh);
    std::stringstream file(state_of(opt));
    CHECK_THROWS_WITH(other.load(file), Catch::Contains("optimizer state, group 'encoder', tensor 'layer.0.weight': has "
                                                        "3000 elements, the parameter has 2999"));
    CHECK(detail::format_number(0.1) == "0.1");
    CHECK(detail::format_number(1e-12) == "1e-12");
    CHECK(detail::format_number(std::numeric_limits<double>::quiet_NaN()) == "nan");
    CHECK(detail::format_number(-std::numeric_limits<double>::infinity()) == "-inf");
    CHECK(detail::format_number(std::size_t{18446744073709551615u}) == "18446744073709551615");
}

TEST_CASE("load options: the file's hyperparameters by default, this optimizer's with hyperparameter_source::current",
          "[optimizer][state]") {
    model m;
    optimizer<adamw> opt(bernoulli{0.5, 7});
    m.attach(opt, base);
    m.new_gradients();
    opt.step();
    const std::string file = state_of(opt);
    const std::string params = m.snapshot();

    // What the user changed after construction: lr, the mask's p and seed.
    const auto changed = [&](optimizer<adamw>& o) {
        o.set_lr(0, 0.5);
        o.set_mask(bernoulli{0.25, 99});
    };

    model saved_m;
    optimizer<adamw> saved(bernoulli{0.5, 7});
    saved_m.attach(saved, base);
    changed(saved);
    {
        std::stringstream in(file);
        saved.load(in); // the default: the file's
    }
    CHECK(saved.group_options(0).lr == base.lr);
    CHECK(saved.mask_policy().target<bernoulli>()->p == 0.5);
    CHECK(saved.mask_policy().target<bernoulli>()->seed == 7);
    CHECK(state_of(saved) == file);

    model current_m;
    optimizer<adamw> current(bernoulli{0.5, 7});
    current_m.attach(current, base);
    changed(current);
    {
        std::stringstream in(file);
        current.load(in, {.hyperparameters = hyperparameter_source::current});
    }
    CHECK(current.group_options(0).lr == 0.5);
    CHECK(current.mask_policy().target<bernoulli>()->p == 0.25);
    CHECK(current.mask_policy().target<bernoulli>()->seed == 99);
    CHECK(current.step_count() == 1);
    // The state is the file's: a file saved now differs only in what was kept.
    optimizer<adamw> expected(bernoulli{0.5, 7});
    model expected_m;
    expected_m.attach(expected, base);
    {
        std::stringstream in(file);
        expected.load(in);
    }
    changed(expected);
    CHECK(state_of(current) == state_of(expected));

    // An unknown source is refused and changes nothing.
    require_rejected(current, current_m, [&] {
        std::stringstream in(file);
        current.load(in, {.hyperparameters = static_cast<hyperparameter_source>(7)});
    }, {"unknown hyperparameter source"});
    (void)params;
}

TEST_CASE("state files: a flipped byte anywhere is reported as corruption at its offset, before parsing",
          "[optimizer][state][errors]") {
    model m;
    optimizer<adamw> opt(bernoulli{0.3, 5});
    m.attach(opt, base);
    m.new_gradients();
    opt.step();
    const std::string good = state_of(opt);
    m.new_gradients();
    opt.step();
    std::vector<std::size_t> offsets;
    for (std::size_t at = 0; at < 400; ++at) offsets.push_back(at); // header, groups, tensor records
    for (std::size_t at = 400; at < good.size(); at += 997) offsets.push_back(at);
    for (std::size_t at = good.size() - 16; at < good.size(); ++at) offsets.push_back(at); // last bytes and checksum
    for (const std::size_t at : offsets) {
        std::string edited = good;
        edited[at] = static_cast<char>(edited[at] ^ (1 << (at % 8)));
        // Exact for the low five bytes of each 8-byte word; a change in a top byte
        // may leave several candidates (io/integrity.hpp), still reported as corruption.
        const std::size_t length = good.size() - 8;
        const bool exact = (at < length ? at % 8 : at - length) < 5;
        const std::string where = exact ? "the byte at offset " + std::to_string(at) + " of " + std::to_string(good.size())
                                        : std::string("was changed");
        require_rejected(opt, m, [&] { std::stringstream in(edited); opt.load(in); },
                         {"optimizer state is corrupt", where.c_str()});
    }
}
