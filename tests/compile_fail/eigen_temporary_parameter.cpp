// Must not compile: a temporary Matrix dies before the optimizer steps.
#include <childtune/eigen.hpp>
#include <childtune/update/adamw.hpp>

int main() {
    Eigen::MatrixXf grad(2, 2);
    childtune::optimizer<childtune::adamw> opt;
    childtune::eigen::add_parameter(opt, opt.add_group("encoder", {}), "w", Eigen::MatrixXf(2, 2), grad);
}
