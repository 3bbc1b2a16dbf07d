#include "reference/compare.hpp"

#include <childtune/update/adam.hpp>

#include <catch2/catch.hpp>

using childtune::adam;

TEMPLATE_TEST_CASE("Adam with L2 decay matches torch.optim.Adam semantics under every mask", "[update][adam]", float,
                   double) {
    for (double wd : {0.0, 0.02}) {
        const adam::options o{.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-7, .weight_decay = wd};
        for (const auto& mode : reference::all_mask_modes())
            for (const auto& masking : reference::all_maskings()) {
                CAPTURE(wd, mode.index(), static_cast<int>(masking.target), masking.decay_masked);
                reference::compare_with_reference<adam, TestType, reference::torch_adam<TestType>>(
                    o, [&] { return reference::torch_adam<TestType>(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay); },
                    mode, masking, 30);
            }
    }
}
