// Must not compile: a host-system policy given to the Thrust adapter of a
// translation unit whose device system is OpenMP (the same mistake as
// thrust::host with device pointers in a CUDA build).
#include <childtune/mask/dense.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/sgd.hpp>

#include <thrust/execution_policy.h>

#include <vector>

int main() {
    std::vector<childtune::thrust::tensor_step<float, float, childtune::dense_view>> batch;
    childtune::thrust::step<childtune::sgd>(::thrust::host, childtune::sgd::options{}, {}, batch);
}
