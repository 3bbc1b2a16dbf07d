// Harness of docs/distributed.md's MPI program: the two functions it leaves to
// the reader, defined before it. ctest runs it as an MPI singleton.
#include <cstddef>
#include <vector>

namespace {
int my_batch(int step, std::size_t rank) { return step + static_cast<int>(rank); }
void compute_gradient(const std::vector<float>& w, std::vector<float>& g, int batch) {
    for (std::size_t i = 0; i < w.size(); ++i) g[i] = w[i] - 0.01f * static_cast<float>(batch % 5);
}
} // namespace

// FRAGMENT
