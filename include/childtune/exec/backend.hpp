#pragma once
//! \file
//! CPU execution backends: how a loop over independent work items is run.
//!
//! Every parallel loop in childtune is over items whose results do not depend on
//! which thread computes them or in which order (element-wise updates, per-chunk
//! histograms and partial sums combined in item order), so the choice of backend
//! and its thread count never changes a result bit.

#include <cstddef>
#include <utility>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace childtune {

//! Runs every work item on the calling thread, in order.
struct serial_backend {
    //! Calls f(0), ..., f(n-1) in order.
    template <class F>
    void parallel_for(std::size_t n, F&& f) const {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
    //! Always 1.
    std::size_t concurrency() const { return 1; }
};

//! Runs work items on an OpenMP team (`threads == 0`: OpenMP's default team size).
//! Without OpenMP (the translation unit was compiled without `-fopenmp`) it runs
//! serially, so code written against it stays portable.
struct openmp_backend {
    //! Team size; 0 takes OpenMP's default (omp_get_max_threads()).
    int threads = 0;

    //! Calls f(i) once for every i in [0, n), dynamically scheduled over the team;
    //! serial when n or the team is 1, or without OpenMP.
    template <class F>
    void parallel_for(std::size_t n, F&& f) const {
#if defined(_OPENMP)
        if (n > 1 && concurrency() > 1) {
            const auto count = static_cast<long long>(n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(concurrency()))
            for (long long i = 0; i < count; ++i) f(static_cast<std::size_t>(i));
            return;
        }
#endif
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
    //! Threads the team may use (1 without OpenMP).
    std::size_t concurrency() const {
#if defined(_OPENMP)
        return static_cast<std::size_t>(threads > 0 ? threads : omp_get_max_threads());
#else
        return 1;
#endif
    }
};

//! The backend used when a caller names none: OpenMP when the translation unit
//! has it, the serial loop otherwise.
using default_backend = openmp_backend;

} // namespace childtune
