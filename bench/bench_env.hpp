#pragma once
// Problem sizes of the benchmarks come from the environment so CI can smoke-test
// them at a small N without a rebuild.

#include <cstddef>
#include <cstdlib>

namespace bench_env {

// The value of environment variable `name` as a count, or `fallback` when it is
// unset, empty, zero or not a number.
inline std::size_t size_or(const char* name, std::size_t fallback) {
    const char* env = std::getenv(name);
    const unsigned long long v = env ? std::strtoull(env, nullptr, 10) : 0;
    return v != 0 ? static_cast<std::size_t>(v) : fallback;
}

} // namespace bench_env
