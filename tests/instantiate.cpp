// childtune/instantiate.hpp: an optimizer declared extern in this unit and
// compiled in instantiate_definitions.cpp steps exactly as the published rule
// (the naive transcription), and the check_extern_unit test proves that this
// unit compiled none of it.
#include "reference/naive_optimizers.hpp"

#include <childtune/childtune.hpp>
#include <childtune/instantiate.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <sstream>
#include <vector>

CHILDTUNE_EXTERN_OPTIMIZER(childtune::adamw)

namespace {
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
} // namespace

TEST_CASE("instantiate: an optimizer compiled in another unit steps as the published AdamW and resumes",
          "[instantiate]") {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    std::vector<float> w(777), g(777);
    for (auto& x : w) x = normal(rng);
    std::vector<std::vector<float>> gradients(4, std::vector<float>(w.size()));
    for (auto& step : gradients)
        for (auto& x : step) x = normal(rng);

    childtune::optimizer<childtune::adamw> opt;
    const auto group = opt.add_group("encoder", {.lr = 1e-2, .weight_decay = 0.1});
    opt.add_parameter(group, "w", w, g);
    reference::torch_adamw<float> naive(1e-2, 0.9, 0.999, 1e-8, 0.1);
    std::vector<float> expected = w;
    const std::vector<bool> keep(w.size(), true);
    std::stringstream saved;
    std::vector<float> w_at_save;
    for (std::size_t step = 0; step < gradients.size(); ++step) {
        g = gradients[step];
        opt.step();
        naive.apply(expected, g, keep, 1.0, {});
        REQUIRE(same_bits(w, expected));
        if (step == 1) {
            opt.save(saved);
            w_at_save = w;
        }
    }

    // A fresh optimizer resumed after step 2 ends on the same bits.
    std::vector<float> w2 = w_at_save;
    childtune::optimizer<childtune::adamw> resumed;
    resumed.add_parameter(resumed.add_group("encoder", {.lr = 1e-2, .weight_decay = 0.1}), "w", w2, g);
    resumed.load(saved);
    for (std::size_t step = 2; step < gradients.size(); ++step) {
        g = gradients[step];
        resumed.step();
    }
    CHECK(same_bits(w2, w));
}
