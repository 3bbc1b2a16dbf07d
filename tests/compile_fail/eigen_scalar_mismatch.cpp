// Must not compile: a float parameter with a double gradient.
#include <childtune/eigen.hpp>
#include <childtune/update/adamw.hpp>

int main() {
    Eigen::MatrixXf w(2, 2);
    Eigen::MatrixXd grad(2, 2);
    childtune::optimizer<childtune::adamw> opt;
    childtune::eigen::add_parameter(opt, opt.add_group("encoder", {}), "w", w, grad);
}
