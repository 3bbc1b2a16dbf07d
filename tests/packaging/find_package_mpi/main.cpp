// A childtune::mpi consumer: one sharded Child-Tuning_F step in a world of one
// MPI process (a singleton MPI_Init). Exits 0 only if the step changed the
// parameter, so a package whose targets compile but do not work is caught too.
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/mpi.hpp>
#include <childtune/update/adamw.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int changed = 0;
    {
        const childtune::mpi::communicator comm;
        std::vector<float> w(64, 1.0f), g(64, 0.5f);
        childtune::adamw::options options;
        options.weight_decay = 0; // any change must come from the masked gradient
        childtune::sharded_optimizer<childtune::adamw, childtune::mpi::communicator> opt(comm, childtune::bernoulli{0.5, 1});
        opt.add_parameter(opt.add_group("encoder", options), "w", w, g);
        opt.step();
        for (const float x : w) changed += x != 1.0f;
        std::printf("childtune::mpi, rank %zu of %zu: %d of %zu elements changed\n", comm.rank(), comm.size(), changed,
                    w.size());
    }
    MPI_Finalize();
    return changed > 0 ? 0 : 1;
}
