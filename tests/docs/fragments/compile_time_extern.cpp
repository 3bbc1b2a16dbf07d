// Harness of docs/compile-time.md's "every other unit" block: the block
// declares the optimizer extern; this unit then uses it as a trainer would.
// Compiling it proves the declarations are well-formed; tests/instantiate.cpp
// proves that such a unit links against the "one unit" and runs.
// FRAGMENT
#include <vector>

void train_one_step(std::vector<float>& w, std::vector<float>& g) {
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.3, 42});
    opt.add_parameter(opt.add_group("encoder", {.lr = 2e-5}), "layer.0.weight", w, g);
    opt.step();
}
