// Harness of README.md's Thrust fragment (its #include goes first), compiled
// by g++ on Thrust's OMP system and run there. `thrust::cuda::par.on(stream)`
// is the CUDA system's policy, which only nvcc compiles: the stand-in below
// gives the same expression the OMP system's policy, so everything childtune
// is asked to do in the fragment is compiled and run as written. (The CUDA
// system itself is compiled by the nvcc programs of tests/ and bench/ and run
// by scripts/gpu-check.sh.)
#include <thrust/device_vector.h>
#include <thrust/fill.h>

#include <cstdint>
#include <string>
#include <vector>

#if defined(__CUDACC__) // the real thing, for a manual nvcc check (see tests/docs/README.md)
#include <thrust/system/cuda/execution_policy.h>
using stream_type = cudaStream_t;
#else
#include <thrust/system/omp/execution_policy.h>
namespace thrust::cuda {
struct stand_in_policy {
    auto on(int /*stream*/) const { return ::thrust::omp::par; }
};
inline constexpr stand_in_policy par{};
} // namespace thrust::cuda
using stream_type = int;
#endif

namespace {
struct buffers {
    thrust::device_vector<float> w, dw, m, v;
    explicit buffers(std::size_t n) : w(n, 0.5f), dw(n, 0.0f), m(n, 0.0f), v(n, 0.0f) {}
};
struct tensor {
    std::string name;
    float* w;
    float* dw;
    float* m;
    float* v;
    std::uint64_t size;
};
} // namespace

int main() {
    const stream_type stream{};
    std::vector<buffers> storage{buffers(100), buffers(50)};
    std::vector<tensor> tensors;
    for (std::size_t i = 0; i < storage.size(); ++i) {
        auto& s = storage[i];
        tensors.push_back({"layer." + std::to_string(i) + ".weight", thrust::raw_pointer_cast(s.w.data()),
                           thrust::raw_pointer_cast(s.dw.data()), thrust::raw_pointer_cast(s.m.data()),
                           thrust::raw_pointer_cast(s.v.data()), s.w.size()});
    }
    const std::vector<int> first_n_batches = {1, 2, 3};
    const std::size_t n = first_n_batches.size();
    const auto backward = [&](int batch) {
        for (auto& s : storage)
            for (std::size_t i = 0; i < s.dw.size(); ++i) s.dw[i] = 0.01f * static_cast<float>((i % 7) * static_cast<std::size_t>(batch));
    };
    const std::uint64_t step = 1;
// FRAGMENT
    return storage[0].w[0] != 0.5f || storage[0].w[6] != 0.5f ? 0 : 1;
}
