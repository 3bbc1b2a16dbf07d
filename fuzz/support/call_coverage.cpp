//! Coverage for g++-built fuzz targets. g++ has no -fsanitize=fuzzer, and the
//! libFuzzer runtime no longer accepts g++'s -fsanitize-coverage=trace-pc; but it
//! reads any counters placed in the `__libfuzzer_extra_counters` section. Code
//! compiled with -finstrument-functions calls __cyg_profile_func_enter(function,
//! call site) on every call; counting (function, call site) pairs gives libFuzzer
//! call-edge coverage of the instrumented code. Together with
//! -fsanitize-coverage=trace-cmp (comparison operands, which libFuzzer understands
//! directly) that is enough to steer it through a parser's checks.
#include <cstddef>
#include <cstdint>

namespace {
constexpr std::size_t counter_count = std::size_t{1} << 16;
}

// NOLINTNEXTLINE: libFuzzer finds the counters by their section.
__attribute__((section("__libfuzzer_extra_counters"), used)) unsigned char childtune_call_counters[counter_count];

extern "C" __attribute__((no_instrument_function)) void __cyg_profile_func_enter(void* function, void* call_site) {
    const auto f = reinterpret_cast<std::uintptr_t>(function);
    const auto s = reinterpret_cast<std::uintptr_t>(call_site);
    const std::uint64_t h = (static_cast<std::uint64_t>(f) * 0x9E3779B97F4A7C15ull) ^ (static_cast<std::uint64_t>(s) * 0xC2B2AE3D27D4EB4Full);
    unsigned char& c = childtune_call_counters[(h >> 32) % counter_count];
    c = static_cast<unsigned char>(c + 1);
}

extern "C" __attribute__((no_instrument_function)) void __cyg_profile_func_exit(void*, void*) {}

// g++'s trace-cmp also reports floating-point comparisons, which libFuzzer has no
// hooks for; integer comparisons (the ones a parser makes) go to libFuzzer.
extern "C" __attribute__((no_instrument_function)) void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" __attribute__((no_instrument_function)) void __sanitizer_cov_trace_cmpd(double, double) {}
