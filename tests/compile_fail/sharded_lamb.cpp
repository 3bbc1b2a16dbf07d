// Must not compile: the sharded optimizer cuts tensors into slices, and a rule
// with a per-tensor phase (LAMB) reduces over whole tensors.
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/update/lamb.hpp>

int main() {
    childtune::single_process_communicator comm;
    childtune::sharded_optimizer<childtune::lamb, childtune::single_process_communicator> opt(comm);
    (void)opt;
}
