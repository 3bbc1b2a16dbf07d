#pragma once
//! \file
//! How many threads the CPU executor's OpenMP team uses when the caller names
//! no count: a documented, testable choice instead of OpenMP's "every hardware
//! thread", which oversubscribes a host where several ranks each start a team
//! (the problem DeepSpeed's CPU Adam users hit with one rank per GPU).
//!
//! In order, the first that applies:
//! 1. an explicit count (openmp_backend::threads > 0);
//! 2. the environment variable CHILDTUNE_NUM_THREADS (a positive integer);
//! 3. OMP_NUM_THREADS, when set: OpenMP's default team, which follows it;
//! 4. several ranks on this host (local_ranks > 1, from the launcher's
//!    environment or a communicator, distributed/local_ranks.hpp): the hardware
//!    threads divided among them, at least 1 each;
//! 5. OpenMP's default team (omp_get_max_threads()).
//!
//! Results never depend on the count (exec/backend.hpp); only the speed does.

#include <childtune/error.hpp>

#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace childtune {

//! Everything the team size depends on; choose_thread_count is a pure function of it.
struct thread_count_inputs {
    int explicit_threads = 0;                         //!< the caller's count; 0: none
    std::optional<std::string> childtune_num_threads; //!< CHILDTUNE_NUM_THREADS, if set
    bool omp_num_threads_set = false;                 //!< whether OMP_NUM_THREADS is set
    std::size_t hardware_threads = 0;                 //!< hardware threads of the host; 0: unknown
    std::size_t local_ranks = 1;                      //!< processes of the job on this host
    std::size_t openmp_default = 1;                   //!< OpenMP's default team size
};

namespace detail {
//! A positive integer from `text` (all digits, no sign or spaces), or throws
//! childtune::error naming `what` and the text.
inline std::size_t parse_positive_count(std::string_view what, const std::string& text) {
    std::size_t v = 0;
    bool ok = !text.empty() && text.size() <= 9;
    for (char c : text) {
        if (c < '0' || c > '9') ok = false;
        else v = 10 * v + static_cast<std::size_t>(c - '0');
    }
    if (!ok || v == 0) fail(std::string(what) + " = '" + text + "' is not a positive integer (at most 9 digits)");
    return v;
}

inline std::optional<std::string> environment_value(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
}
} // namespace detail

//! The team size for `in` (the rules of this file, in their order); at least 1.
//! Throws childtune::error for a negative explicit count or a CHILDTUNE_NUM_THREADS
//! that is not a positive integer.
inline std::size_t choose_thread_count(const thread_count_inputs& in) {
    if (in.explicit_threads < 0)
        detail::fail("CPU backend: thread count = " + std::to_string(in.explicit_threads) + " is negative");
    if (in.explicit_threads > 0) return static_cast<std::size_t>(in.explicit_threads);
    if (in.childtune_num_threads) return detail::parse_positive_count("CHILDTUNE_NUM_THREADS", *in.childtune_num_threads);
    const std::size_t fallback = in.openmp_default > 0 ? in.openmp_default : 1;
    if (in.omp_num_threads_set) return fallback;
    if (in.local_ranks > 1) {
        const std::size_t hw = in.hardware_threads > 0 ? in.hardware_threads : fallback;
        return hw / in.local_ranks > 0 ? hw / in.local_ranks : 1;
    }
    return fallback;
}

//! Processes of this job on this host as launchers announce them: Open MPI's
//! OMPI_COMM_WORLD_LOCAL_SIZE, MPICH/Hydra's MPI_LOCALNRANKS, torchrun's
//! LOCAL_WORLD_SIZE (the first set); 1 when none is. A set but malformed value
//! is a childtune::error naming the variable.
inline std::size_t local_ranks_from_environment() {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"})
        if (const auto v = detail::environment_value(name)) return detail::parse_positive_count(name, *v);
    return 1;
}

//! The inputs of this process: `explicit_threads`, the environment
//! (CHILDTUNE_NUM_THREADS, OMP_NUM_THREADS, the launchers' local sizes), the
//! given hardware thread count and OpenMP default.
inline thread_count_inputs thread_count_inputs_from_environment(int explicit_threads, std::size_t hardware_threads,
                                                                std::size_t openmp_default) {
    thread_count_inputs in;
    in.explicit_threads = explicit_threads;
    if (explicit_threads != 0) return in;
    in.childtune_num_threads = detail::environment_value("CHILDTUNE_NUM_THREADS");
    in.omp_num_threads_set = detail::environment_value("OMP_NUM_THREADS").has_value();
    in.hardware_threads = hardware_threads;
    in.openmp_default = openmp_default;
    if (!in.childtune_num_threads && !in.omp_num_threads_set) in.local_ranks = local_ranks_from_environment();
    return in;
}

} // namespace childtune
