#pragma once
// The statistics the example programs report over seeds.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <vector>

namespace example_stats {

//! Mean and sample standard deviation.
struct mean_std {
    double mean = 0, std = 0;
};
inline mean_std summarize(const std::vector<double>& v) {
    mean_std s;
    if (v.empty()) return s;
    for (const double x : v) s.mean += x;
    s.mean /= static_cast<double>(v.size());
    if (v.size() > 1) {
        for (const double x : v) s.std += (x - s.mean) * (x - s.mean);
        s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));
    }
    return s;
}

//! Per-seed differences a - b. Every method sees the same data, head and batch
//! order for a seed, so the paired difference removes the (large) variation
//! between few-shot samples that the per-method std is dominated by.
inline std::vector<double> paired_differences(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> d(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
    return d;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace example_stats
