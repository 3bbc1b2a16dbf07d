// Catch2's implementation without a main(): for test programs whose main() sets
// up an engine first (MPI, c10d ranks) and then runs the cases.
#define CATCH_CONFIG_RUNNER
#include "support/catch_runner.hpp"

#include <catch2/catch.hpp>

int test_support::run_catch(int argc, char** argv) {
    Catch::Session session;
    const int result = session.applyCommandLine(argc, argv);
    return result != 0 ? result : session.run();
}
