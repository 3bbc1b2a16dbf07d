// Writes the compatibility data of tests/compat/scenarios.hpp: for each scenario
// its state file after `saved_step` steps (<dir>/<name>.ctstate) and one line per
// step in <dir>/trajectories.txt: "<name> <step> <parameter hash> <state-file hash>".
// Run once with the version whose files later versions must keep loading:
//
//     make_compat_data tests/data/v0.1

#include "compat/scenarios.hpp"

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
    std::ofstream lines(dir + "/trajectories.txt");
    for (const auto& s : compat::scenarios()) {
        std::vector<std::string> params, states;
        std::string saved;
        s.run({}, params, states, saved);
        std::ofstream(dir + "/" + s.name + ".ctstate", std::ios::binary) << saved;
        for (std::size_t t = 0; t < params.size(); ++t)
            lines << s.name << ' ' << t + 1 << ' ' << params[t] << ' ' << states[t] << '\n';
    }
    return lines ? 0 : 1;
}
