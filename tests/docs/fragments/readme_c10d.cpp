// Harness of README.md's c10d fragment (its #includes go first): compiled, not
// run (a Gloo group of several ranks is what the c10d/* tests run).
#include <string>

void docs_fragment(const std::string& rendezvous, int rank, int world_size) {
    (void)rendezvous;
// FRAGMENT
    (void)opt;
}
