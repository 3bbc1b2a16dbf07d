// Harness of docs/thrust.md's optimizer fragment, run by g++ on Thrust's OMP
// system: on_stream is that system's policy (the page's is CUDA's, which only
// nvcc compiles); bf16 tensors of an encoder and a classifier in device memory.
#include <childtune/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/fill.h>
#include <thrust/system/omp/execution_policy.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace {
using bf16 = childtune::bfloat16;
struct tensor {
    std::string name;
    bf16* w;
    bf16* dw;
    std::uint64_t size;
};
} // namespace

int main() {
    const auto on_stream = thrust::omp::par;
    const std::uint64_t seed = 42;
    thrust::device_vector<bf16> w0(128, bf16(0.5f)), dw0(128, bf16(0.0f)), wc(10, bf16(0.5f)), dwc(10, bf16(0.0f));
    const std::vector<tensor> encoder = {{"layer.0.weight", thrust::raw_pointer_cast(w0.data()), thrust::raw_pointer_cast(dw0.data()), 128}};
    const std::vector<tensor> classifier = {{"classifier.weight", thrust::raw_pointer_cast(wc.data()), thrust::raw_pointer_cast(dwc.data()), 10}};
    const std::vector<int> batches = {1, 2};
    const auto backward = [&](int batch) {
        thrust::fill(dw0.begin(), dw0.end(), bf16(0.1f * static_cast<float>(batch)));
        thrust::fill(dwc.begin(), dwc.end(), bf16(0.1f * static_cast<float>(batch)));
    };
// FRAGMENT
    return opt.step_count() == 2 ? 0 : 1;
}
