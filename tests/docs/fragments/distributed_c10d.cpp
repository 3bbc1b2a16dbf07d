// Harness of docs/distributed.md's c10d function (its #includes go first): the
// Model it assumes; compiled, not run (the c10d/* tests run Gloo groups).
#include <map>
#include <string>
#include <vector>

struct Model {
    struct parameter {
        std::vector<float> value, grad;
    };
    std::map<std::string, parameter> parameters;
    std::map<std::string, parameter>& flat_parameters() { return parameters; }
    std::vector<int> batches_of_rank(int rank, int world) const { return {rank, rank + world}; }
    void forward_backward(int batch) {
        for (auto& [name, p] : parameters)
            for (auto& g : p.grad) g = static_cast<float>(batch);
    }
};

// FRAGMENT
