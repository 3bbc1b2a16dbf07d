// The Thrust executor's fused CUDA kernels for the LibTorch optimizer
// (torch/cuda_kernels.cuh), registered for every rule the package binds.
// setup.py compiles this unit only when torch has CUDA and nvcc exists
// (CUDAExtension, -DCHILDTUNE_PY_CUDA); without it, CUDA tensors take the ATen
// path, with the same results in more passes over memory.
#include <childtune/torch/cuda_kernels.cuh>

CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adamw)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::adam)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::sgd)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::lion)
CHILDTUNE_TORCH_CUDA_KERNELS(childtune::lamb)
