#pragma once
// Problem sizes of the benchmarks come from the environment so CI can smoke-test
// them at a small N without a rebuild.

#include <cstddef>
#include <cstdlib>
#include <vector>

namespace bench_env {

// The value of environment variable `name` as a count, or `fallback` when it is
// unset, empty, zero or not a number.
inline std::size_t size_or(const char* name, std::size_t fallback) {
    const char* env = std::getenv(name);
    const unsigned long long v = env ? std::strtoull(env, nullptr, 10) : 0;
    return v != 0 ? static_cast<std::size_t>(v) : fallback;
}

// A comma-separated list of counts ("1048576,4194304"), or `fallback` when the
// variable is unset or holds no positive number.
inline std::vector<std::size_t> sizes_or(const char* name, std::vector<std::size_t> fallback) {
    const char* env = std::getenv(name);
    if (!env) return fallback;
    std::vector<std::size_t> sizes;
    for (const char* s = env; *s;) {
        char* end = nullptr;
        const unsigned long long v = std::strtoull(s, &end, 10);
        if (end == s) {
            ++s;
            continue;
        }
        if (v != 0) sizes.push_back(static_cast<std::size_t>(v));
        s = end;
    }
    return sizes.empty() ? fallback : sizes;
}

} // namespace bench_env
