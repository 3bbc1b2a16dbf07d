#pragma once
// Runs the linked Catch2 cases with Catch's command line (tests/catch_runner.cpp):
// Catch::Session is declared only where Catch's implementation is compiled.

namespace test_support {
int run_catch(int argc, char** argv);
}
