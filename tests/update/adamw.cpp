#include "reference/compare.hpp"

#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

using childtune::adamw;
using childtune::adamw_flavour;

TEMPLATE_TEST_CASE("legacy AdamW matches the published Child-Tuning optimizer", "[update][adamw]", float, double) {
    const adamw::options o{.lr = 2e-3, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.05,
                           .flavour = adamw_flavour::legacy};
    for (const auto& mode : reference::all_mask_modes())
        for (const auto& masking : reference::all_maskings()) {
            CAPTURE(mode.index(), static_cast<int>(masking.target), masking.decay_masked);
            reference::compare_with_reference<adamw, TestType, reference::legacy_adamw<TestType>>(
                o, [&] { return reference::legacy_adamw<TestType>(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay); },
                mode, masking, 40);
        }
}

TEMPLATE_TEST_CASE("torch AdamW matches torch.optim.AdamW semantics", "[update][adamw]", float, double) {
    const adamw::options o{.lr = 1e-3, .beta1 = 0.85, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                           .flavour = adamw_flavour::torch};
    for (const auto& mode : reference::all_mask_modes())
        for (const auto& masking : reference::all_maskings()) {
            CAPTURE(mode.index(), static_cast<int>(masking.target), masking.decay_masked);
            reference::compare_with_reference<adamw, TestType, reference::torch_adamw<TestType>>(
                o, [&] { return reference::torch_adamw<TestType>(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay); },
                mode, masking, 40);
        }
}

TEMPLATE_TEST_CASE("AdamW without weight decay never touches the decay path", "[update][adamw]", float, double) {
    const adamw::options torch{.lr = 1e-2, .weight_decay = 0.0, .flavour = adamw_flavour::torch};
    reference::compare_with_reference<adamw, TestType, reference::torch_adamw<TestType>>(
        torch, [&] { return reference::torch_adamw<TestType>(torch.lr, torch.beta1, torch.beta2, torch.eps, 0.0); },
        childtune::bernoulli{0.5, 1}, {}, 10);
    const adamw::options legacy{.lr = 1e-2, .weight_decay = 0.0, .flavour = adamw_flavour::legacy};
    reference::compare_with_reference<adamw, TestType, reference::legacy_adamw<TestType>>(
        legacy, [&] { return reference::legacy_adamw<TestType>(legacy.lr, legacy.beta1, legacy.beta2, legacy.eps, 0.0); },
        childtune::bernoulli{0.5, 1}, {}, 10);
}

TEST_CASE("AdamW hand-computed first step", "[update][adamw]") {
    // One element, g = 0.5, lr = 0.1, wd = 0.1, betas (0.9, 0.999), eps = 0:
    // m = 0.05, v = 0.00025, bias-corrected m/sqrt(v) = 1 in both flavours.
    // torch:  p = 1 * (1 - 0.01) - 0.1 * 1            = 0.89
    // legacy: p = 1 - 0.1 * 1, then p -= 0.1*0.1*p    = 0.9 * 0.99 = 0.891
    for (auto [flavour, expected] : {std::pair{adamw_flavour::torch, 0.89}, std::pair{adamw_flavour::legacy, 0.891}}) {
        childtune::optimizer<adamw> opt;
        const auto g = opt.add_group("g", {.lr = 0.1, .eps = 0.0, .weight_decay = 0.1, .flavour = flavour});
        std::vector<double> p{1.0}, grad{0.5};
        opt.add_parameter(g, "w", p, grad);
        opt.step();
        CHECK(p[0] == Approx(expected).epsilon(1e-12));
    }
}
