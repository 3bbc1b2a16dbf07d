// The kernels' instruction set and its caps (exec/cpu_isa.hpp). ctest also runs
// the "[environment]" case of this program under CHILDTUNE_MAX_ISA=sse2, =avx2
// and =avx3 (tests/CMakeLists.txt), so the variable is checked as a process
// reads it, not only through the pure chooser.
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

using childtune::cpu_isa;
using childtune::cpu_isa_name;
using childtune::parse_cpu_isa;
using childtune::detail::choose_cpu_isa;

namespace {
// CPUs as the chooser sees them: the widest set each runs.
auto runs_up_to(cpu_isa widest) {
    return [widest](cpu_isa isa) { return isa <= widest; };
}
const bool x86_dispatch = !childtune::detail::scalar_kernels_dispatched; // SSE2 is the narrowest kernel
} // namespace

TEST_CASE("cpu isa: names and digits parse in any case, and name what they parse", "[exec][cpu_isa]") {
    for (int i = 0; i <= 3; ++i) {
        const auto isa = static_cast<cpu_isa>(i);
        CHECK(parse_cpu_isa("x", cpu_isa_name(isa)) == isa);
        CHECK(parse_cpu_isa("x", std::to_string(i)) == isa);
    }
    CHECK(cpu_isa_name(cpu_isa::avx512) == "avx512");
    CHECK(parse_cpu_isa("x", "AVX2") == cpu_isa::avx2);
    CHECK(parse_cpu_isa("x", "Sse2") == cpu_isa::sse2);
}

TEST_CASE("bad input: an instruction set that is not one names the setting and the text", "[exec][cpu_isa][bad_input]") {
    for (std::string bad : {"", "avx3", "avx-512", "AVX512F", " avx2", "avx2 ", "4", "-1", "03", "sse"})
        CHECK_THROWS_WITH(parse_cpu_isa("CHILDTUNE_MAX_ISA", bad),
                          "childtune: CHILDTUNE_MAX_ISA = '" + bad +
                              "' is not an instruction set: use scalar, sse2, avx2 or avx512 (or 0-3)");
    CHECK_THROWS_WITH(choose_cpu_isa("avx3", cpu_isa::avx512, false, runs_up_to(cpu_isa::avx512)),
                      Catch::Contains("CHILDTUNE_MAX_ISA = 'avx3' is not an instruction set"));
}

TEST_CASE("cpu isa: the widest set the CPU runs under both caps", "[exec][cpu_isa]") {
    const auto avx512_cpu = runs_up_to(cpu_isa::avx512), avx2_cpu = runs_up_to(cpu_isa::avx2);
    // No cap: the CPU's widest.
    CHECK(choose_cpu_isa(nullptr, cpu_isa::avx512, false, avx512_cpu) == cpu_isa::avx512);
    CHECK(choose_cpu_isa("", cpu_isa::avx512, false, avx512_cpu) == cpu_isa::avx512); // empty: unset
    CHECK(choose_cpu_isa(nullptr, cpu_isa::avx512, false, avx2_cpu) == cpu_isa::avx2);
    // The environment caps.
    CHECK(choose_cpu_isa("avx2", cpu_isa::avx512, false, avx512_cpu) == cpu_isa::avx2);
    CHECK(choose_cpu_isa("1", cpu_isa::avx512, false, avx512_cpu) == cpu_isa::sse2);
    // A cap above the CPU picks what it runs.
    CHECK(choose_cpu_isa("avx512", cpu_isa::avx512, false, avx2_cpu) == cpu_isa::avx2);
    // The compile-time cap and the environment: the lower wins, either way round.
    CHECK(choose_cpu_isa("avx512", cpu_isa::avx2, false, avx512_cpu) == cpu_isa::avx2);
    CHECK(choose_cpu_isa("sse2", cpu_isa::avx2, false, avx512_cpu) == cpu_isa::sse2);
    // Sets the CPU lacks are skipped, not assumed from a wider one.
    CHECK(choose_cpu_isa(nullptr, cpu_isa::avx512, false, [](cpu_isa isa) { return isa != cpu_isa::avx512; }) ==
          cpu_isa::avx2);
    CHECK(choose_cpu_isa(nullptr, cpu_isa::avx512, false, [](cpu_isa isa) { return isa == cpu_isa::scalar; }) ==
          cpu_isa::scalar);
}

TEST_CASE("bad input: a scalar cap where the dispatch has no scalar kernels says how to get them",
          "[exec][cpu_isa][bad_input]") {
    const auto cpu = runs_up_to(cpu_isa::avx512);
    for (const char* scalar : {"scalar", "0", "SCALAR"})
        CHECK_THROWS_WITH(choose_cpu_isa(scalar, cpu_isa::avx512, false, cpu),
                          std::string("childtune: CHILDTUNE_MAX_ISA = '") + scalar +
                              "': this program has no scalar kernels in its dispatch (compile with "
                              "-DCHILDTUNE_MAX_ISA=0 for them); the narrowest set at run time is sse2");
    CHECK(choose_cpu_isa("scalar", cpu_isa::avx512, true, cpu) == cpu_isa::scalar);
    CHECK(choose_cpu_isa(nullptr, cpu_isa::scalar, true, cpu) == cpu_isa::scalar);
}

// Run by ctest in several environments: with CHILDTUNE_MAX_ISA unset (the
// discovered case) and set to sse2, avx2 and avx3 (entries cpu_isa/...).
TEST_CASE("cpu isa: this process follows CHILDTUNE_MAX_ISA, and a bad one fails the optimizer's constructor",
          "[exec][cpu_isa][environment]") {
    const char* const environment = std::getenv("CHILDTUNE_MAX_ISA");
    const auto make_optimizer = [] { return childtune::optimizer<childtune::adamw>(childtune::bernoulli{0.5, 1}); };
    bool malformed = false;
    cpu_isa expected = cpu_isa::scalar;
    try {
        expected = choose_cpu_isa(environment, static_cast<cpu_isa>(CHILDTUNE_MAX_ISA),
                                  childtune::detail::scalar_kernels_dispatched,
                                  [](cpu_isa isa) { return childtune::detail::cpu_supports(isa); });
    } catch (const childtune::error&) {
        malformed = true;
    }
    if (malformed) {
        const std::string message = std::string("CHILDTUNE_MAX_ISA = '") + environment + "'";
        CHECK_THROWS_WITH(make_optimizer(), Catch::Contains(message));
        CHECK_THROWS_WITH(childtune::cpu_kernel_isa(), Catch::Contains(message));
        CHECK_THROWS_WITH(make_optimizer(), Catch::Contains(message)); // every time, not only the first
        return;
    }
    auto opt = make_optimizer();
    CHECK(childtune::cpu_kernel_isa() == expected);
    CHECK(childtune::detail::best_cpu_isa() == expected); // what the kernels dispatch on
    if (environment != nullptr && *environment != '\0') {
        const cpu_isa asked = parse_cpu_isa("CHILDTUNE_MAX_ISA", environment);
        CHECK(childtune::cpu_kernel_isa() <= asked);
    }
    if (x86_dispatch) CHECK(childtune::cpu_kernel_isa() >= cpu_isa::sse2);
    // A Child-Tuning_F step on the chosen kernels keeps what the scalar
    // definition keeps: kept elements move, the others stay (no weight decay).
    std::vector<float> w(300, 0.5f), g(300, 0.25f);
    const auto group = opt.add_group("encoder", {.lr = 0.1, .weight_decay = 0.0});
    opt.add_parameter(group, "w", w, g);
    opt.step();
    const auto keep = childtune::bernoulli{0.5, 1}.view(childtune::stable_tensor_key("w"), 0); // the first step is 0
    for (std::size_t i = 0; i < w.size(); ++i) CHECK((w[i] != 0.5f) == keep.keep(i));
}
