"""Builds the `childtune` Python package: the library's LibTorch optimizer and
Fisher selection as a torch extension (childtune._C) plus the Python
torch.optim.Optimizer classes (python/childtune/).

    /usr/bin/python3 -m venv --system-site-packages venv
    venv/bin/python -m pip install --no-build-isolation --no-deps .

Builds offline against the torch that is installed (Debian 12's python3-torch
1.13, or PyTorch 2.x). With a CUDA torch and nvcc on PATH (or CUDA_HOME), CUDA
parameters run the Thrust executor's fused kernels (python/csrc/cuda_kernels.cu);
otherwise they run the same rule as ATen operations. CHILDTUNE_PY_CUDA=0 forces
the CPU-only build.
"""
import os
import shutil

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
INCLUDES = [os.path.join(ROOT, "include"), os.path.join(ROOT, "adapters", "torch", "include"),
            os.path.join(ROOT, "adapters", "thrust", "include")]
# -g0: Python's own compile flags carry -g, which for these LibTorch-heavy units
# makes objects of ~60 MB, a 20x larger extension and half again the compile time.
CXX_FLAGS = ["-std=c++20", "-O2", "-g0", "-fopenmp", "-fvisibility=hidden"]


def want_cuda():
    if os.environ.get("CHILDTUNE_PY_CUDA", "auto") == "0":
        return False
    import torch
    if torch.version.cuda is None:
        return False
    home = cpp_extension.CUDA_HOME
    return bool(home and os.path.exists(os.path.join(home, "bin", "nvcc"))) or shutil.which("nvcc") is not None


def cuda_architectures():
    """TORCH_CUDA_ARCH_LIST, as every torch extension reads it, when it is set
    (torch then adds the flags); else A100 and H100/H200 machine code and PTX
    that newer GPUs compile when the module loads."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return []
    return ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90,code=compute_90"]


def extension():
    sources = ["python/csrc/module.cpp", "python/csrc/rules.cpp"]
    if not want_cuda():
        return cpp_extension.CppExtension("childtune._C", sources, include_dirs=INCLUDES,
                                          extra_compile_args={"cxx": CXX_FLAGS}, extra_link_args=["-fopenmp"])
    # Not built on the machines that run CI (their torch has no CUDA): the same
    # unit the C++ tests compile with nvcc, registered into this extension.
    cccl = [os.path.join(cpp_extension.CUDA_HOME or "/usr/local/cuda", "include", "cccl")]
    return cpp_extension.CUDAExtension(
        "childtune._C", sources + ["python/csrc/cuda_kernels.cu"], include_dirs=INCLUDES + cccl,
        extra_compile_args={"cxx": CXX_FLAGS + ["-DCHILDTUNE_PY_CUDA=1"],
                            # --fmad=false: no a*b + c fused into an FMA, so CUDA
                            # parameters get the CPU's bits (tests/python/test_cuda.py).
                            "nvcc": ["-std=c++20", "-O2", "--expt-relaxed-constexpr", "--fmad=false",
                                     "--threads=0", "-DCHILDTUNE_PY_CUDA=1"] + cuda_architectures()},
        extra_link_args=["-fopenmp"])


setup(
    name="childtune",
    version="0.2.0",
    description="Child-Tuning optimizers (Xu et al. 2021) for PyTorch, on the childtune C++ library",
    packages=["childtune"],
    package_dir={"": "python"},
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.8",
)
