// Must not compile: the optimizer writes parameters in place, a const one cannot be one.
#include <childtune/eigen.hpp>
#include <childtune/update/adamw.hpp>

int main() {
    const Eigen::MatrixXf w(2, 2);
    Eigen::MatrixXf grad(2, 2);
    childtune::optimizer<childtune::adamw> opt;
    childtune::eigen::add_parameter(opt, opt.add_group("encoder", {}), "w", w, grad);
}
