// The Thrust executor's fused CUDA kernels for the LibTorch optimizer
// (torch/cuda_kernels.cuh), registered for every rule the package binds.
// setup.py compiles this unit only when torch has CUDA and nvcc exists
// (CUDAExtension, -DCHILDTUNE_PY_CUDA); without it, CUDA tensors take the ATen
// path, with the same results in more passes over memory. The C++ tests compile
// this same unit with nvcc (tests/CMakeLists.txt: childtune_torch_cuda_kernels):
// in CI, where nothing runs it, as the check that it compiles; with a CUDA
// LibTorch and a GPU, linked into test_adapters_torch_cuda and run.
#include <childtune/torch/cuda_kernels.cuh>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>

CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adamw)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adam)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::sgd)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::lion)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::lamb)
