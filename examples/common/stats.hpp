#pragma once
// The statistics the example programs report over seeds.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
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

//! The regularized incomplete beta function I_x(a, b), by its continued fraction
//! (modified Lentz), on the side of x where it converges fast.
inline double incomplete_beta(double a, double b, double x) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    if (x > (a + 1) / (a + b + 2)) return 1 - incomplete_beta(b, a, 1 - x);
    const double front =
        std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x)) / a;
    constexpr double tiny = 1e-300;
    double f = 1, c = 1, d = 0;
    for (int i = 0; i <= 400; ++i) {
        const int m = i / 2;
        double numerator;
        if (i == 0) numerator = 1;
        else if (i % 2 == 0) numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
        else numerator = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1));
        d = 1 + numerator * d;
        d = std::abs(d) < tiny ? tiny : d;
        d = 1 / d;
        c = 1 + numerator / c;
        c = std::abs(c) < tiny ? tiny : c;
        f *= c * d;
        if (std::abs(1 - c * d) < 1e-15) break;
    }
    return front * (f - 1);
}

//! P(T <= t) for Student's t distribution with `df` degrees of freedom.
inline double student_t_cdf(double t, double df) {
    const double tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t));
    return t >= 0 ? 1 - tail : tail;
}

//! The `probability` quantile of Student's t with `df` > 0 degrees of freedom
//! (for a two-sided 95 % interval: probability 0.975), by bisection on the cdf.
inline double student_t_quantile(double probability, double df) {
    if (probability == 0.5) return 0;
    if (probability < 0.5) return -student_t_quantile(1 - probability, df);
    double low = 0, high = 1;
    while (student_t_cdf(high, df) < probability) high *= 2;
    for (int i = 0; i < 200 && high - low > 1e-13 * high; ++i) {
        const double mid = (low + high) / 2;
        (student_t_cdf(mid, df) < probability ? low : high) = mid;
    }
    return (low + high) / 2;
}

//! A mean with the half-width of its two-sided t-interval: mean +- half_width
//! covers the true mean with probability `level` (n >= 2 values; with one
//! value the half-width is infinite).
struct interval {
    double mean = 0, half_width = 0;
    std::size_t n = 0;
    double low() const { return mean - half_width; }
    double high() const { return mean + half_width; }
};
inline interval t_interval(const std::vector<double>& v, double level = 0.95) {
    const mean_std s = summarize(v);
    interval out{s.mean, 0, v.size()};
    if (v.size() < 2) out.half_width = std::numeric_limits<double>::infinity();
    else
        out.half_width = student_t_quantile(0.5 + level / 2, static_cast<double>(v.size() - 1)) * s.std /
                         std::sqrt(static_cast<double>(v.size()));
    return out;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace example_stats
