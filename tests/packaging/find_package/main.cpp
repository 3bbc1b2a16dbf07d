// A childtune consumer: one Child-Tuning_F step on an Eigen matrix. Exits 0 only
// if the step changed the parameter, so a package whose targets compile but do
// not work is caught too.
#include <childtune/childtune.hpp>
#include <childtune/eigen.hpp>

#include <Eigen/Core>

#include <cstdio>

int main() {
    Eigen::MatrixXf w = Eigen::MatrixXf::Constant(8, 4, 1.0f);
    const Eigen::MatrixXf grad = Eigen::MatrixXf::Constant(8, 4, 0.5f);
    const Eigen::MatrixXf before = w;

    childtune::adamw::options options;
    options.weight_decay = 0; // any change must come from the masked gradient
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.5, 1});
    childtune::eigen::add_parameter(opt, opt.add_group("encoder", options), "w", w, grad);
    opt.step();

    const auto changed = (w.array() != before.array()).count();
    std::printf("childtune %d.%d.%d: %ld of %ld elements changed\n", CHILDTUNE_VERSION_MAJOR,
                CHILDTUNE_VERSION_MINOR, CHILDTUNE_VERSION_PATCH, static_cast<long>(changed),
                static_cast<long>(w.size()));
    return changed > 0 ? 0 : 1;
}
