#pragma once
//! \file
//! How many ranks of a communicator run on this host, so that each can take its
//! share of the host's hardware threads (exec/thread_count.hpp) instead of all
//! of them. Works for any communicator (MPI, LibTorch c10d): ranks exchange a
//! hash of their host name, with no engine-specific call (MPI's
//! MPI_COMM_TYPE_SHARED split gives the same count for MPI).

#include <childtune/concepts.hpp>
#include <childtune/distributed/communicator.hpp>
#include <childtune/exec/backend.hpp>

#include <cstddef>
#include <cstdint>
#include <thread>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace childtune {

namespace detail {
//! FNV-1a of this host's name (0 when it cannot be read).
inline std::uint64_t host_name_hash() {
    std::uint64_t h = 0xCBF29CE484222325ull;
#if __has_include(<unistd.h>)
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0) return 0;
    for (const char* c = name; *c != 0; ++c) {
        h ^= static_cast<unsigned char>(*c);
        h *= 0x100000001B3ull;
    }
#endif
    return h;
}
} // namespace detail

//! The number of ranks of `comm` on this rank's host (at least 1). A collective:
//! every rank must call it.
template <communicator C>
std::size_t local_rank_count(const C& comm) {
    const std::uint64_t mine = detail::host_name_hash();
    std::size_t n = 0;
    for (std::uint64_t h : detail::all_gather_value(comm, mine)) n += h == mine;
    return n > 0 ? n : 1;
}

//! An OpenMP backend whose team is this rank's share of the host (hardware
//! threads / local ranks of `comm`), unless CHILDTUNE_NUM_THREADS or
//! OMP_NUM_THREADS says otherwise (exec/thread_count.hpp). A collective.
template <communicator C>
openmp_backend backend_for_local_ranks(const C& comm) {
    thread_count_inputs in = thread_count_inputs_from_environment(0, std::thread::hardware_concurrency(),
                                                                  openmp_backend{}.openmp_default());
    in.local_ranks = local_rank_count(comm);
    return openmp_backend{static_cast<int>(choose_thread_count(in))};
}

} // namespace childtune
