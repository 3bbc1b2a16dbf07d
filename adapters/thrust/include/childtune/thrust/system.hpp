#pragma once
//! \file
//! Which Thrust device system this translation unit compiles for, and the inline
//! namespace every piece of the adapter lives in.
//!
//! An inline function that uses Thrust internally but has no Thrust type in its
//! signature would get one mangled name in a CUDA translation unit and in an
//! OpenMP one, and the linker would keep either body for both (DESIGN.md §4).
//! Naming the inline namespace after the device system gives each system its own
//! symbols; callers never spell it.

#include <thrust/detail/config.h>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
//! The inline namespace of this unit's device system: on_cuda, on_omp, on_tbb
//! or on_cpp (the reference shows on_cuda).
#define CHILDTUNE_THRUST_SYSTEM_NAMESPACE on_cuda
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
#define CHILDTUNE_THRUST_SYSTEM_NAMESPACE on_omp
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_TBB
#define CHILDTUNE_THRUST_SYSTEM_NAMESPACE on_tbb
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CPP
#define CHILDTUNE_THRUST_SYSTEM_NAMESPACE on_cpp
#else
#error "childtune::thrust: unknown THRUST_DEVICE_SYSTEM"
#endif
