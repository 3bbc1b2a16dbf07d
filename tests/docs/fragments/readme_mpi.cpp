// Harness of README.md's MPI fragment (its #includes go first): one MPI
// process (ctest runs it as an MPI singleton), the buffers, data and
// forward_backward() the fragment assumes.
#include <string>
#include <vector>

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    {
        std::vector<float> w0(64, 0.5f), grad_w0(64);
        const std::vector<int> data = {1, 2, 3};
        const auto my_share_of = [](const std::vector<int>& all) { return all; };
        const auto forward_backward = [&](int batch) {
            for (std::size_t i = 0; i < w0.size(); ++i) grad_w0[i] = w0[i] * static_cast<float>(batch);
        };
// FRAGMENT
    }
    MPI_Finalize();
    return 0;
}
