#pragma once
// What a CUDA build of LibTorch generates here. Debian's LibTorch is built
// without CUDA and ships c10/cuda's headers without it; CI compiles the
// LibTorch adapter's CUDA kernels against those headers with this file.
#define C10_CUDA_BUILD_SHARED_LIBS
