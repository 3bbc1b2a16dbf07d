#pragma once
//! \file
//! CPU execution backends: how a loop over independent work items is run.
//!
//! Every parallel loop in childtune is over items whose results do not depend on
//! which thread computes them or in which order (element-wise updates, per-chunk
//! histograms and partial sums combined in item order), so the choice of backend
//! and its thread count never changes a result bit.

#include <childtune/exec/thread_count.hpp>

#include <cstddef>
#include <thread>
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

//! Runs work items on an OpenMP team (`threads == 0`: the documented default of
//! exec/thread_count.hpp: CHILDTUNE_NUM_THREADS, OMP_NUM_THREADS, the host's
//! hardware threads shared among the job's local ranks, OpenMP's default).
//! Without OpenMP (the translation unit was compiled without `-fopenmp`) it runs
//! serially, so code written against it stays portable.
struct openmp_backend {
    //! Team size; 0 chooses by choose_thread_count (exec/thread_count.hpp).
    int threads = 0;

    //! Calls f(i) once for every i in [0, n), dynamically scheduled over the team;
    //! serial when n or the team is 1, or without OpenMP.
    template <class F>
    void parallel_for(std::size_t n, F&& f) const {
#if defined(_OPENMP)
        // The team size is chosen once per loop (it reads the environment).
        if (const std::size_t team = n > 1 ? concurrency() : 1; team > 1) {
            const auto count = static_cast<long long>(n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(team))
            for (long long i = 0; i < count; ++i) f(static_cast<std::size_t>(i));
            return;
        }
#endif
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
    //! Threads the team may use (1 without OpenMP); throws childtune::error for a
    //! negative count or a malformed CHILDTUNE_NUM_THREADS or launcher variable.
    std::size_t concurrency() const {
#if defined(_OPENMP)
        if (threads > 0) return static_cast<std::size_t>(threads);
        return choose_thread_count(thread_count_inputs_from_environment(threads, std::thread::hardware_concurrency(),
                                                                        openmp_default()));
#else
        return 1;
#endif
    }
    //! OpenMP's default team size (omp_get_max_threads(); 1 without OpenMP).
    std::size_t openmp_default() const {
#if defined(_OPENMP)
        const int n = omp_get_max_threads();
        return n > 0 ? static_cast<std::size_t>(n) : 1;
#else
        return 1;
#endif
    }
};

//! The backend used when a caller names none: OpenMP when the translation unit
//! has it, the serial loop otherwise.
using default_backend = openmp_backend;

} // namespace childtune
