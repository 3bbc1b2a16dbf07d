// Must not compile: an optimizer's rule must model childtune::update_rule.
#include <childtune/optimizer.hpp>

int main() {
    childtune::optimizer<int> opt;
    (void)opt;
}
