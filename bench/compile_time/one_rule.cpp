// Compile-time probe: a translation unit that uses the optimizer with one rule.
#include <childtune/childtune.hpp>

#include <sstream>
#include <vector>

int main() {
    std::vector<float> w(1000, 0.5f), g(1000, 0.1f);
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.3, 42});
    const auto group = opt.add_group("encoder", {.lr = 2e-5});
    opt.add_parameter(group, "layer.0.weight", w, g);
    opt.step();
    std::stringstream state;
    opt.save(state);
    opt.load(state);
    return opt.step_count() == 1 ? 0 : 1;
}
