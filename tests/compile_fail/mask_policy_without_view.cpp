// Must not compile: a group's mask must model childtune::mask_policy.
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

struct not_a_policy {
    void validate() const {}
};

int main() {
    childtune::optimizer<childtune::adamw> opt;
    opt.add_group("g", {}, not_a_policy{});
}
