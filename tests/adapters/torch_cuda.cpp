// The LibTorch optimizers on CUDA tensors through the Thrust kernels
// (python/csrc/cuda_kernels.cu, the package's unit, compiled with --fmad=false): the same
// bits as on CPU tensors, for every mask, and a checkpoint written on the GPU
// resumes on the CPU. Built and run where a CUDA LibTorch and a GPU are found.

#include <childtune/torch.hpp>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <sstream>
#include <string>
#include <vector>

namespace {

using childtune::torch::ChildTuningAdamW;
using childtune::torch::ChildTuningAdamWOptions;

struct model {
    ::torch::OrderedDict<std::string, at::Tensor> named;
    explicit model(const at::Device& device) {
        ::torch::manual_seed(3);
        for (const auto& [name, n] : std::vector<std::pair<std::string, std::int64_t>>{
                 {"layer.0.weight", 4099}, {"layer.0.bias", 63}, {"head.weight", 300}})
            named.insert(name, ::torch::randn({n}).to(device).set_requires_grad(true));
    }
    void gradients(int step) {
        for (auto& item : named) {
            ::torch::manual_seed(100 + step);
            item.value().mutable_grad() = (0.1 * ::torch::randn({item.value().numel()})).to(item.value().device());
        }
    }
};

childtune::mask_set masks() {
    childtune::mask_set set;
    for (const auto& [name, n] : std::vector<std::pair<std::string, std::size_t>>{{"layer.0.weight", 4099}, {"layer.0.bias", 63}}) {
        childtune::bit_mask m(n);
        for (std::size_t i = 0; i < n; ++i) m.set(i, i % 3 != 1);
        set.add(name, std::move(m));
    }
    return set;
}

} // namespace

TEST_CASE("LibTorch CUDA: CUDA tensors take the fused kernels and give the CPU's bits", "[torch][cuda]") {
    const std::vector<childtune::any_mask> modes = {childtune::dense{}, childtune::bernoulli{0.3, 5}, childtune::fixed{masks()}};
    for (const auto& mode : modes) {
        model cpu(at::kCPU), gpu(at::kCUDA);
        const auto options = ChildTuningAdamWOptions(1e-2).weight_decay(0.01).flavour(childtune::adamw_flavour::legacy);
        ChildTuningAdamW a(cpu.named, options, mode, childtune::torch::name_contains("layer"));
        ChildTuningAdamW b(gpu.named, options, mode, childtune::torch::name_contains("layer"));
        for (int t = 0; t < 4; ++t) {
            cpu.gradients(t);
            gpu.gradients(t);
            a.step();
            b.step();
        }
        CHECK(b.core().executor().where(0) == childtune::torch::detail::placement::cuda);
        for (const auto& item : cpu.named) CHECK(at::equal(item.value(), gpu.named[item.key()].cpu()));
        std::ostringstream out;
        b.core().save(out);
        std::ostringstream expected;
        a.core().save(expected);
        CHECK(out.str() == expected.str());
    }
}
