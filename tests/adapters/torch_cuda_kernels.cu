// The LibTorch adapter's CUDA kernels for every rule of the library, compiled
// by nvcc (torch/cuda_kernels.cuh): where no GPU is lent this is the check that
// the CUDA path compiles; with one, test_adapters_torch_cuda links it and runs.
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
