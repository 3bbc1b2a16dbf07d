// LAMB (update/lamb.hpp): checked against a naive transcription of the
// published rule (You et al. 2019, Algorithm 2) under every mask and masking
// option, and on every executor of the test program (this file is built into
// the CPU, Thrust and LibTorch test programs): its per-tensor phase, the trust
// ratio, gives the same bits everywhere.

#include "support/every_executor.hpp"

#include <childtune/update/lamb.hpp>

#include <catch2/catch.hpp>

#if !defined(CHILDTUNE_TEST_THRUST) && !defined(CHILDTUNE_TEST_TORCH)
#include "reference/compare.hpp"
#include "support/error_matcher.hpp"

#include <cmath>
#include <vector>

namespace {

// LAMB, Algorithm 2 of the paper, per tensor: Adam moments with bias
// correction, r = m_hat / (sqrt(v_hat) + eps), u = r + wd*p, trust ratio
// ||p|| / ||u|| (1 when either is 0), p -= lr * ratio * u. Masks as the
// Child-Tuning reference: the gradient is masked (and divided by p), or with
// masks on the update only kept elements take r (divided by p).
template <class S>
struct naive_lamb {
    double lr, beta1, beta2, eps, weight_decay, trust_clip;
    std::vector<S> m{}, v{};
    long step = 0;

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p,
               reference::masking mk) {
        if (m.empty()) m.assign(p.size(), S(0)), v.assign(p.size(), S(0));
        ++step;
        const double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
        std::vector<S> u(p.size());
        double weight_norm = 0.0, update_norm = 0.0;
        for (std::size_t i = 0; i < p.size(); ++i) {
            S grad = g[i];
            if (!mk.mask_update) grad = keep[i] ? grad / S(keep_p) : S(0);
            m[i] = m[i] * S(beta1) + S(1.0 - beta1) * grad;
            v[i] = v[i] * S(beta2) + S(1.0 - beta2) * grad * grad;
            const S r = (m[i] / S(bc1)) / (std::sqrt(v[i] / S(bc2)) + S(eps));
            u[i] = !mk.mask_update ? r : (keep[i] ? r / S(keep_p) : S(0));
            if (weight_decay != 0.0 && (mk.decay_masked || keep[i])) u[i] = u[i] + S(weight_decay) * p[i];
            weight_norm += double(p[i] * p[i]);
            update_norm += double(u[i] * u[i]);
        }
        weight_norm = std::sqrt(weight_norm);
        update_norm = std::sqrt(update_norm);
        double ratio = weight_norm > 0 && update_norm > 0 ? weight_norm / update_norm : 1.0;
        if (trust_clip > 0 && ratio > trust_clip) ratio = trust_clip;
        for (std::size_t i = 0; i < p.size(); ++i) {
            const bool moves = !mk.mask_update || keep[i] || (weight_decay != 0.0 && mk.decay_masked);
            if (moves) p[i] = p[i] + S(-lr * ratio) * u[i];
        }
    }
};

} // namespace

TEMPLATE_TEST_CASE("LAMB: matches the naive transcription under every mask and masking option", "[update][lamb]", float,
                   double) {
    for (double clip : {0.0, 0.5}) {
        const childtune::lamb::options o{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05,
                                         .trust_clip = clip};
        for (const auto& mode : reference::all_mask_modes())
            for (const auto& masking : reference::all_maskings()) {
                CAPTURE(clip, mode.index(), static_cast<int>(masking.target), masking.decay_masked);
                reference::compare_with_reference<childtune::lamb, TestType, naive_lamb<TestType>>(
                    o, [&] { return naive_lamb<TestType>{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.trust_clip}; },
                    mode, masking, 30);
            }
    }
}

TEST_CASE("LAMB: the trust ratio scales the step to ||p|| / ||u|| (hand-computed first step)", "[update][lamb]") {
    // g = (3, 4) scaled by 1e-3: after bias correction r = g/|g| elementwise = (1, 1)·(1 - tiny), so
    // u ≈ (1, 1), ||u|| ≈ sqrt(2); p = (3, 4), ||p|| = 5; p -= lr * 5/sqrt(2) * u.
    childtune::optimizer<childtune::lamb> opt;
    const auto group = opt.add_group("g", {.lr = 0.01, .eps = 1e-12, .weight_decay = 0.0});
    std::vector<double> p{3.0, 4.0}, g{3e-3, 4e-3};
    opt.add_parameter(group, "w", p, g);
    opt.step();
    const double step = 0.01 * 5.0 / std::sqrt(2.0);
    CHECK(p[0] == Approx(3.0 - step).epsilon(1e-9));
    CHECK(p[1] == Approx(4.0 - step).epsilon(1e-9));
}

TEST_CASE("LAMB: compact Child-Tuning_D state gives the full state's bits", "[update][lamb]") {
    const childtune::lamb::options o{.lr = 1e-3, .weight_decay = 0.05};
    const auto fixed = every_executor::masks()[2];
    childtune::optimizer_options compact;
    compact.compact_fixed_state = true;
    REQUIRE(every_executor::cpu<childtune::lamb>(o, every_executor::with_mask(fixed)).run(5, 2) ==
            every_executor::cpu<childtune::lamb>(o, every_executor::with_mask(fixed), compact).run(5, 2));
}

TEST_CASE("LAMB: slices are refused and options are checked", "[update][lamb][errors]") {
    using test_support::error_with;
    childtune::optimizer<childtune::lamb> opt;
    const auto group = opt.add_group("g", {});
    std::vector<float> p(10), g(10);
    CHECK_THROWS_MATCHES(opt.add_parameter_slice(group, "w", 20, 0, childtune::tensor_view<float>(p),
                                                 childtune::tensor_view<const float>(g)),
                         childtune::error, error_with("reduces over whole tensors"));
    CHECK(opt.tensor_count() == 0);
    CHECK_THROWS_MATCHES(opt.add_group("h", {.trust_clip = -1.0}), childtune::error, error_with("trust_clip"));
    CHECK_THROWS_MATCHES(opt.add_group("h", {.eps = -1.0}), childtune::error, error_with("eps"));
    const childtune::lamb::options o{.lr = 0.5, .eps = 1e-3, .correct_bias = false, .trust_clip = 2.0};
    CHECK(childtune::lamb::from_values(childtune::lamb::to_values(o)) == o);
}
#endif

TEST_CASE("LAMB: every executor gives the same bits (saved and resumed)", "[update][lamb]") {
    const childtune::lamb::options o{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05};
    for (const auto& mask : every_executor::masks()) {
        INFO("mask " << mask.type().name());
        every_executor::require_same_bits<childtune::lamb>(o, every_executor::with_mask(mask));
    }
}
