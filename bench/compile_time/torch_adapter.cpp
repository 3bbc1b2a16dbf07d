// Compile-time probe: a translation unit that uses the LibTorch adapter.
#include <childtune/torch.hpp>

#include <torch/nn/modules/linear.h>

int main() {
    torch::nn::Linear layer(16, 4);
    childtune::torch::ChildTuningAdamW opt(layer->named_parameters(), childtune::torch::ChildTuningAdamWOptions(1e-3),
                                           childtune::bernoulli{0.3, 42});
    layer->forward(torch::ones({2, 16})).sum().backward();
    opt.step();
    return opt.step_count() == 1 ? 0 : 1;
}
