// main() of the step benchmarks: registers every method of every shape in a fixed
// order (all methods of one shape back to back, on the same memory), then runs
// Google Benchmark as usual.

#include "step_support.hpp"

#include <childtune/exec/cpu_isa.hpp>

#include <benchmark/benchmark.h>

#include <string>

int main(int argc, char** argv) {
    bench::context().emplace_back("compiler", __VERSION__);
    bench::context().emplace_back("openmp_threads", std::to_string(childtune::default_backend{}.concurrency()));
    // The kernels' instruction set (CHILDTUNE_MAX_ISA caps it at run time or at compile time).
    bench::context().emplace_back("childtune_cpu_isa", std::string(childtune::cpu_isa_name(childtune::cpu_kernel_isa())));
    for (const auto& s : bench::shapes())
        if (s.model) {
            bench::context().emplace_back("model_layers", std::to_string(s.layers));
            bench::context().emplace_back("model_hidden", std::to_string(s.hidden));
        }
    bench::register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
