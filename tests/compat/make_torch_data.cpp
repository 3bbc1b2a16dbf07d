// Writes the LibTorch adapter's compatibility data (tests/compat/torch_scenarios.hpp):
// <dir>/<name>.pt (torch::save after `saved_step` steps) and lines
// "<name> <step> <parameter hash>" in <dir>/torch_trajectories.txt.
//
//     make_compat_torch_data tests/data/v0.1

#include "compat/torch_scenarios.hpp"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    std::ofstream lines(dir + "/torch_trajectories.txt");
    for (const auto& s : compat::torch_scenarios()) {
        std::vector<std::string> params;
        compat::run_torch_scenario(s, params, dir + "/" + s.name + ".pt", {});
        for (std::size_t t = 0; t < params.size(); ++t) lines << s.name << ' ' << t + 1 << ' ' << params[t] << '\n';
    }
    return lines ? 0 : 1;
}
