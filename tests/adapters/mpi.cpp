// Data-parallel Child-Tuning under MPI, run by ctest as mpi/np2 and mpi/np3:
// the rank test cases (tests/distributed/rank_cases.hpp) on childtune::mpi over
// MPI_COMM_WORLD.

#define CATCH_CONFIG_RUNNER
#include <childtune/mpi.hpp>

using test_communicator = childtune::mpi::communicator;
const test_communicator& test_comm() {
    static const test_communicator comm; // MPI_COMM_WORLD, after MPI_Init in main()
    return comm;
}

#include "distributed/rank_cases.hpp"

#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdlib>

// Run only by ctest's mpi/np3_rank_dies (a hidden tag): the last rank dies
// before the step. MPI has no timeout for a collective whose peer is gone; the
// launcher ends the job instead — every rank is stopped and mpirun reports the
// dead rank — so the others do not wait forever.
TEST_CASE("ranks: a rank that dies before the step ends the MPI job", "[.rank_dies]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    model m;
    sharded opt(comm, bernoulli{0.5, 1});
    m.attach(opt, dist_test::test_options());
    m.gradients(0);
    if (comm.rank() + 1 == comm.size()) std::_Exit(3);
    opt.step(); // never returns: mpirun stops this rank
    FAIL("rank " << comm.rank() << " finished a step without the dead rank");
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    Catch::Session session;
    int result = session.applyCommandLine(argc, argv);
    if (result == 0) result = session.run();
    // A rank that failed makes the job fail (mpirun reports the nonzero status);
    // all ranks still finalise together.
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return result;
}
