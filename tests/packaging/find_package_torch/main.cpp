// A childtune::torch consumer: one Child-Tuning_F step of ChildTuningAdamW. Exits 0
// only if the masked parameter moved.
#include <childtune/torch.hpp>

#include <torch/torch.h>

#include <cstdio>

int main() {
    at::Tensor w = torch::ones({8, 4}).set_requires_grad(true);
    w.mutable_grad() = torch::full({8, 4}, 0.5);
    const at::Tensor before = w.detach().clone();
    childtune::torch::ChildTuningAdamW opt(std::vector<at::Tensor>{w},
                                           childtune::torch::ChildTuningAdamWOptions(1e-2).weight_decay(0),
                                           childtune::bernoulli{0.5, 1});
    opt.step();
    const auto changed = (w.detach() != before).sum().item<long>();
    std::printf("childtune::torch: %ld of 32 elements changed\n", changed);
    return changed > 0 ? 0 : 1;
}
