#pragma once
//! \file
//! childtune::mpi — the distributed communicator (distributed/communicator.hpp)
//! over an MPI communicator, for data-parallel Child-Tuning on an existing MPI
//! job: the sharded optimizer and the distributed Fisher selection run their
//! collectives through MPI_Allreduce, MPI_Allgatherv and MPI_Bcast.
//!
//! MPI stays the caller's: it is initialised and finalised by the program, and
//! the communicator passed in must outlive this object. Collectives that return
//! an error code (under an MPI_ERRORS_RETURN handler) throw childtune::error
//! naming the operation and the rank; under MPI's default handler an MPI error
//! aborts the job, which is not a hang either.

// The whole core (standard library only; sharded_optimizer and the rules among
// it): an MPI program needs no other childtune include.
#include <childtune/childtune.hpp>
#include <childtune/distributed/communicator.hpp>
#include <childtune/error.hpp>

// Only MPI's C API is used. OpenMPI's and MPICH's deprecated C++ bindings (removed
// in MPI-3) warn under -Wcast-function-type wherever mpi.h is not a system header.
#ifndef OMPI_SKIP_MPICXX
//! Keeps OpenMPI's deprecated C++ bindings out of the translation unit.
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
//! Keeps MPICH's deprecated C++ bindings out of the translation unit.
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace childtune::mpi {

//! The communicator concept over an MPI communicator (MPI_Allreduce,
//! MPI_Allgatherv, MPI_Bcast); MPI stays the caller's to initialise and finalise.
class communicator {
public:
    //! Wraps `comm` (not duplicated, not freed); MPI must be initialised.
    explicit communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
        int initialised = 0;
        MPI_Initialized(&initialised);
        if (!initialised) detail::fail("mpi::communicator: MPI is not initialised (call MPI_Init first)");
        int r = 0, s = 0;
        check(MPI_Comm_rank(comm_, &r), "MPI_Comm_rank");
        check(MPI_Comm_size(comm_, &s), "MPI_Comm_size");
        rank_ = static_cast<std::size_t>(r);
        size_ = static_cast<std::size_t>(s);
    }

    //! This process's rank in the MPI communicator.
    std::size_t rank() const { return rank_; }
    //! Number of ranks.
    std::size_t size() const { return size_; }
    //! The wrapped MPI communicator.
    MPI_Comm native() const { return comm_; }

    //! Element-wise sum over the ranks, in place (MPI_Allreduce).
    void all_reduce_sum(std::span<float> x) const { reduce(x.data(), x.size(), MPI_FLOAT); }
    //! Element-wise sum over the ranks, in place (MPI_Allreduce).
    void all_reduce_sum(std::span<double> x) const { reduce(x.data(), x.size(), MPI_DOUBLE); }
    //! Element-wise sum over the ranks, in place (MPI_Allreduce; exact for integers).
    void all_reduce_sum(std::span<std::uint64_t> x) const { reduce(x.data(), x.size(), MPI_UINT64_T); }

    //! Variable-size byte blocks in rank order (MPI_Allgatherv). MPI counts and
    //! displacements are int: blocks and their total must stay below 2 GiB.
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all, std::span<const std::size_t> counts) const {
        detail::check_all_gather("mpi::communicator", rank_, size_, mine.size(), all.size(), counts);
        std::vector<int> c(size_), d(size_);
        std::size_t at = 0;
        for (std::size_t r = 0; r < size_; ++r) {
            if (counts[r] > static_cast<std::size_t>(INT_MAX) || at > static_cast<std::size_t>(INT_MAX))
                detail::fail("mpi::communicator: all_gather of more than 2 GiB [rank " + std::to_string(rank_) + "]");
            c[r] = static_cast<int>(counts[r]);
            d[r] = static_cast<int>(at);
            at += counts[r];
        }
        check(MPI_Allgatherv(mine.data(), c[rank_], MPI_BYTE, all.data(), c.data(), d.data(), MPI_BYTE, comm_),
              "MPI_Allgatherv");
    }

    //! Rank `root`'s bytes overwrite the others' (MPI_Bcast, in pieces below INT_MAX bytes).
    void broadcast(std::span<std::byte> bytes, std::size_t root) const {
        detail::check_broadcast_root("mpi::communicator", root, size_);
        std::size_t done = 0;
        do { // in pieces below MPI's int count
            const std::size_t n = std::min(bytes.size() - done, static_cast<std::size_t>(INT_MAX));
            check(MPI_Bcast(bytes.data() + done, static_cast<int>(n), MPI_BYTE, static_cast<int>(root), comm_), "MPI_Bcast");
            done += n;
        } while (done < bytes.size());
    }

private:
    void reduce(void* data, std::size_t n, MPI_Datatype type) const {
        if (n > static_cast<std::size_t>(INT_MAX))
            detail::fail("mpi::communicator: all_reduce_sum of more than INT_MAX elements [rank " + std::to_string(rank_) + "]");
        check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), type, MPI_SUM, comm_), "MPI_Allreduce");
    }
    void check(int code, const char* what) const {
        if (code == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(code, text, &length);
        detail::fail(std::string("mpi::communicator: ") + what + " failed: " + std::string(text, static_cast<std::size_t>(length)) +
                     " [rank " + std::to_string(rank_) + "]");
    }

    MPI_Comm comm_;
    std::size_t rank_ = 0;
    std::size_t size_ = 1;
};

static_assert(childtune::communicator<communicator>);

} // namespace childtune::mpi
