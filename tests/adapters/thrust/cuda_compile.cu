// Compile-only check of the Thrust adapter's CUDA path (CI has nvcc but no GPU):
// every update rule and mask view instantiated for a CUDA stream, fp32 and
// bf16 parameters, so errors in device code show up without a device.

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <thrust/execution_policy.h>

#include <vector>

template <class P, class S, class View>
void instantiate(cudaStream_t stream) {
    std::vector<childtune::thrust::tensor_step<P, S, View>> batch;
    const auto on_stream = thrust::cuda::par.on(stream);
    childtune::thrust::step<childtune::adamw>(on_stream, childtune::adamw::options{}, {}, batch);
    childtune::thrust::step<childtune::adam>(on_stream, childtune::adam::options{}, {}, batch);
    childtune::thrust::step<childtune::sgd>(on_stream, childtune::sgd::options{}, {}, batch);
}

int main() {
    instantiate<float, float, childtune::dense_view>(nullptr);
    instantiate<float, float, childtune::bernoulli_view>(nullptr);
    instantiate<float, float, childtune::fixed_view>(nullptr);
    instantiate<childtune::bfloat16, float, childtune::bernoulli_view>(nullptr);
    instantiate<childtune::bfloat16, float, childtune::fixed_view>(nullptr);
}
