// Lion (update/lion.hpp): checked against a naive transcription of the
// published rule (Chen et al. 2023, Algorithm 2; lion-pytorch's step) under every
// mask and masking option, and on every executor of the test program (this file
// is built into the CPU, Thrust and LibTorch test programs).

#include "support/every_executor.hpp"

#include <childtune/update/lion.hpp>

#include <catch2/catch.hpp>

#if !defined(CHILDTUNE_TEST_THRUST) && !defined(CHILDTUNE_TEST_TORCH)
#include "reference/compare.hpp"
#include "support/error_matcher.hpp"

#include <cmath>
#include <vector>

namespace {

// lion-pytorch's Lion.step(), element by element, with the reference's masking
// (grad *= mask; grad /= p) and weight decay p *= 1 - lr*wd.
template <class S>
struct naive_lion {
    double lr, beta1, beta2, weight_decay;
    std::vector<S> exp_avg{};

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p,
               reference::masking mk) {
        if (exp_avg.empty()) exp_avg.assign(p.size(), S(0));
        for (std::size_t i = 0; i < p.size(); ++i) {
            if (weight_decay != 0.0 && (mk.decay_masked || keep[i])) p[i] = p[i] * S(1.0 - lr * weight_decay);
            S grad = g[i];
            if (!mk.mask_update) grad = keep[i] ? grad / S(keep_p) : S(0);
            const S c = exp_avg[i] * S(beta1) + S(1.0 - beta1) * grad;
            const S sign = c > S(0) ? S(1) : (c < S(0) ? S(-1) : S(0));
            S delta = S(-lr) * sign;
            if (mk.mask_update) delta = keep[i] ? delta / S(keep_p) : S(0);
            p[i] = p[i] + delta;
            exp_avg[i] = exp_avg[i] * S(beta2) + S(1.0 - beta2) * grad;
        }
    }
};

} // namespace

TEMPLATE_TEST_CASE("Lion: matches the naive transcription under every mask and masking option", "[update][lion]", float,
                   double) {
    const childtune::lion::options o{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.1};
    for (const auto& mode : reference::all_mask_modes())
        for (const auto& masking : reference::all_maskings()) {
            CAPTURE(mode.index(), static_cast<int>(masking.target), masking.decay_masked);
            reference::compare_with_reference<childtune::lion, TestType, naive_lion<TestType>>(
                o, [&] { return naive_lion<TestType>{o.lr, o.beta1, o.beta2, o.weight_decay}; }, mode, masking, 30);
        }
}

TEST_CASE("Lion: every kept element moves by exactly lr (hand-computed first step)", "[update][lion]") {
    // m = 0, g = (0.5, -2, 0): c = 0.1*g, sign = (1, -1, 0); p = 1 - 0.01*(1, -1, 0).
    childtune::optimizer<childtune::lion> opt;
    const auto group = opt.add_group("g", {.lr = 0.01, .weight_decay = 0.0});
    std::vector<double> p{1.0, 1.0, 1.0}, g{0.5, -2.0, 0.0};
    opt.add_parameter(group, "w", p, g);
    opt.step();
    CHECK(p == std::vector<double>{0.99, 1.01, 1.0});
}

TEST_CASE("Lion: compact Child-Tuning_D state gives the full state's bits", "[update][lion]") {
    const childtune::lion::options o{.lr = 1e-3, .weight_decay = 0.05};
    const auto fixed = every_executor::masks()[2];
    childtune::optimizer_options compact;
    compact.compact_fixed_state = true;
    const auto full = every_executor::cpu<childtune::lion>(o, every_executor::with_mask(fixed)).run(5, 2);
    const auto small = every_executor::cpu<childtune::lion>(o, every_executor::with_mask(fixed), compact).run(5, 2);
    REQUIRE(full == small);
}

TEST_CASE("Lion: bad hyperparameters are refused naming the group", "[update][lion][errors]") {
    childtune::optimizer<childtune::lion> opt;
    using test_support::error_with;
    CHECK_THROWS_MATCHES(opt.add_group("g", {.lr = -1.0}), childtune::error, error_with("group 'g': lr"));
    CHECK_THROWS_MATCHES(opt.add_group("g", {.beta1 = 1.0}), childtune::error, error_with("beta1"));
    CHECK_THROWS_MATCHES(opt.add_group("g", {.beta2 = -0.1}), childtune::error, error_with("beta2"));
    CHECK_THROWS_MATCHES(opt.add_group("g", {.weight_decay = NAN}), childtune::error, error_with("weight_decay"));
    const childtune::lion::options o{.lr = 0.5, .beta1 = 0.8, .beta2 = 0.7, .weight_decay = 0.25};
    CHECK(childtune::lion::from_values(childtune::lion::to_values(o)) == o);
}
#endif

TEST_CASE("Lion: every executor gives the same bits (saved and resumed)", "[update][lion]") {
    const childtune::lion::options o{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.1};
    for (const auto& mask : every_executor::masks()) {
        INFO("mask " << mask.type().name());
        every_executor::require_same_bits<childtune::lion>(o, every_executor::with_mask(mask));
    }
}
