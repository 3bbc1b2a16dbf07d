// The C++ optimizer's Child-Tuning_F keep decisions, for test_same_masks.py:
// childtune::optimizer<childtune::sgd> (lr 1, no momentum) over zero buffers
// with all-one gradients, Bernoulli(p, seed), tensors named as the Python
// optimizer names plain parameters ("param_group0.<i>"), or as given
// (NAME:SIZE). After each step it prints, per tensor, one line of 0/1: whether
// each element moved.
//
//   reference_mask P SEED STEPS SIZE|NAME:SIZE...
#include <childtune/childtune.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 5) return 2;
    const double p = std::strtod(argv[1], nullptr);
    const auto seed = std::strtoull(argv[2], nullptr, 10);
    const int steps = std::atoi(argv[3]);
    std::vector<std::vector<float>> w, g;
    std::vector<std::string> names;
    for (int i = 4; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto colon = arg.rfind(':');
        names.push_back(colon == std::string::npos ? "param_group0." + std::to_string(i - 4) : arg.substr(0, colon));
        const auto n = static_cast<std::size_t>(std::strtoull(arg.c_str() + (colon == std::string::npos ? 0 : colon + 1), nullptr, 10));
        w.emplace_back(n, 0.0f);
        g.emplace_back(n, 1.0f);
    }
    childtune::optimizer<childtune::sgd> opt(childtune::bernoulli{.p = p, .seed = seed});
    const auto group = opt.add_group("param_group0", {.lr = 1.0});
    for (std::size_t t = 0; t < w.size(); ++t) opt.add_parameter(group, names[t], w[t], g[t]);
    for (int s = 0; s < steps; ++s) {
        std::vector<std::vector<float>> before = w;
        opt.step();
        for (std::size_t t = 0; t < w.size(); ++t) {
            std::string line(w[t].size(), '0');
            for (std::size_t i = 0; i < w[t].size(); ++i) line[i] = w[t][i] != before[t][i] ? '1' : '0';
            std::printf("%s\n", line.c_str());
        }
    }
    return 0;
}
