// Harness of README.md's LibTorch fragment (its #include goes first): a model
// whose "layer" parameters are masked, a loader of three batches and loss_of();
// runs the fragment's loop and saves the optimizer.
#include <torch/torch.h>

#include <memory>
#include <vector>

struct NetImpl : torch::nn::Module {
    NetImpl() : layer(register_module("layer", torch::nn::Linear(4, 3))), head(register_module("head", torch::nn::Linear(3, 2))) {}
    torch::Tensor forward(const torch::Tensor& x) { return head(torch::relu(layer(x))); }
    torch::nn::Linear layer;
    torch::nn::Linear head;
};
TORCH_MODULE(Net);

int main() {
    torch::manual_seed(0);
    Net model;
    auto loader = std::make_unique<std::vector<torch::Tensor>>();
    for (int i = 0; i < 3; ++i) loader->push_back(torch::randn({8, 4}));
    const auto loss_of = [&](const torch::Tensor& batch) { return model->forward(batch).pow(2).mean(); };
// FRAGMENT
    return 0;
}
