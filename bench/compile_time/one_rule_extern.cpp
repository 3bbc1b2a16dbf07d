// Compile-time probe: the one-rule unit of one_rule.cpp in a program that
// compiles the optimizer in another unit (childtune/instantiate.hpp).
#include <childtune/childtune.hpp>
#include <childtune/instantiate.hpp>

#include <sstream>
#include <vector>

CHILDTUNE_EXTERN_OPTIMIZER(childtune::adamw)

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
