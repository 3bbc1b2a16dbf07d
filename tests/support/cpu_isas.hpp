#pragma once
// The kernel instruction sets this CPU runs, for tests that compare every one
// of them with the scalar definition.

#include <childtune/exec/cpu_isa.hpp>

#include <vector>

namespace test_support {

//! scalar, then each wider set the CPU supports, narrowest first.
inline std::vector<childtune::cpu_isa> supported_cpu_isas() {
    using childtune::cpu_isa;
    std::vector<cpu_isa> out;
    for (auto isa : {cpu_isa::scalar, cpu_isa::sse2, cpu_isa::avx2, cpu_isa::avx512})
        if (childtune::detail::cpu_supports(isa)) out.push_back(isa);
    return out;
}

} // namespace test_support
