// Must not compile: a parameter and its gradient must share their element type.
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <vector>

int main() {
    childtune::optimizer<childtune::adamw> opt;
    std::vector<float> p(4);
    std::vector<double> g(4);
    opt.add_parameter(0, "w", p, g);
}
