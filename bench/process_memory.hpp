#pragma once
// The process's memory as Linux reports it, for the benchmarks' peak-memory
// counters: what a method adds is its peak resident set (VmHWM, reset before it)
// minus the resident set it started from.

#include <malloc.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bench {

// A field of /proc/self/status in bytes ("VmRSS:", "VmHWM:"); 0 where unavailable.
inline std::size_t status_bytes(const char* key) {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    std::size_t kib = 0;
    const std::size_t len = std::strlen(key);
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, key, len) == 0) {
            kib = static_cast<std::size_t>(std::strtoull(line + len, nullptr, 10));
            break;
        }
    std::fclose(f);
    return kib * 1024;
}
inline std::size_t rss_bytes() { return status_bytes("VmRSS:"); }
inline std::size_t peak_rss_bytes() { return status_bytes("VmHWM:"); }

// Resets the peak (VmHWM) to the current RSS: Linux >= 4.0, "5" to clear_refs.
inline void reset_peak_rss() {
    if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
    }
}

// Resets the peak and returns the RSS it starts from: the memory a method adds is
// the peak at its end minus this.
inline std::size_t begin_memory() {
    malloc_trim(0); // hand freed heap pages back, so new allocations show in the RSS
    reset_peak_rss();
    return rss_bytes();
}

} // namespace bench
