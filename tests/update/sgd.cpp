#include "reference/compare.hpp"

#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

using childtune::sgd;

TEMPLATE_TEST_CASE("SGD matches torch.optim.SGD semantics (momentum, dampening, Nesterov, L2)", "[update][sgd]", float,
                   double) {
    const sgd::options variants[] = {
        {.lr = 0.05},
        {.lr = 0.05, .momentum = 0.9},
        {.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01},
        {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.03, .nesterov = true},
    };
    for (const auto& o : variants)
        for (const auto& mode : reference::all_mask_modes())
            for (const auto& masking : reference::all_maskings()) {
                CAPTURE(o.momentum, o.nesterov, mode.index(), static_cast<int>(masking.target), masking.decay_masked);
                reference::compare_with_reference<sgd, TestType, reference::torch_sgd<TestType>>(
                    o, [&] { return reference::torch_sgd<TestType>(o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov); },
                    mode, masking, 25);
            }
}

TEST_CASE("SGD without momentum keeps no state", "[update][sgd]") {
    childtune::optimizer<sgd> opt;
    const auto g = opt.add_group("g", {.lr = 0.1});
    std::vector<float> p(100, 1.0f), grad(100, 1.0f);
    opt.add_parameter(g, "w", p, grad);
    opt.step();
    CHECK(opt.state_bytes() == 0);
    CHECK(p[0] == Approx(0.9f));
}

TEST_CASE("SGD validates Nesterov preconditions", "[update][sgd]") {
    childtune::optimizer<sgd> opt;
    CHECK_THROWS_WITH(opt.add_group("enc", {.lr = 0.1, .momentum = 0.0, .nesterov = true}),
                      Catch::Contains("group 'enc'") && Catch::Contains("nesterov"));
}
