// Must not compile: an Eigen expression has no memory for the optimizer to update.
// tests/CMakeLists.txt expects the adapter's static_assert message.
#include <childtune/eigen.hpp>
#include <childtune/update/adamw.hpp>

int main() {
    Eigen::MatrixXf a(2, 2), b(2, 2), grad(2, 2);
    childtune::optimizer<childtune::adamw> opt;
    childtune::eigen::add_parameter(opt, opt.add_group("encoder", {}), "w", a + b, grad);
}
