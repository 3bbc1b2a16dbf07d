// Harness of README.md's Child-Tuning_D fragment: an optimizer as the
// Child-Tuning_F fragment before it builds one, the data and forward_backward().
#include <childtune/childtune.hpp>

#include <cstdio>
#include <vector>

int main() {
    std::vector<float> w0(64, 0.5f), grad_w0(64);
    const std::vector<int> data = {1, 2, 3, 4};
    const std::size_t batches = data.size();
    const auto forward_backward = [&](int batch) {
        for (std::size_t i = 0; i < w0.size(); ++i) grad_w0[i] = static_cast<float>(i % 5) * static_cast<float>(batch);
    };
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{.p = 0.3, .seed = 42});
    opt.add_parameter(opt.add_group("encoder", {.lr = 2e-5}), "layer.0.weight", w0, grad_w0);
// FRAGMENT
    opt.step();
    return selected.masks.summary().at(0).kept > 0 ? 0 : 1;
}
