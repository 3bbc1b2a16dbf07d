// Data-parallel Child-Tuning under MPI, run by ctest as mpi/np2 and mpi/np3
// (and mpi/np3_rank_dies): the rank test cases (tests/distributed/rank_cases.cpp)
// on childtune::mpi over MPI_COMM_WORLD.

#include "distributed/any_communicator.hpp"
#include "support/catch_runner.hpp"

#include <childtune/mpi.hpp>

#include <mpi.h>

#include <optional>

namespace {
std::optional<dist_test::communicator_ref<childtune::mpi::communicator>> this_rank;
}
const dist_test::any_communicator& test_comm() { return *this_rank; }

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int result = 0;
    {
        const childtune::mpi::communicator comm; // MPI_COMM_WORLD
        this_rank.emplace(comm);
        result = test_support::run_catch(argc, argv);
        this_rank.reset();
    }
    // A rank that failed makes the job fail (mpirun reports the nonzero status);
    // all ranks still finalise together.
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return result;
}
