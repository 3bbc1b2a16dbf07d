// The statistics of the example programs' reports, against published tables and
// closed forms: a sweep's 95 % intervals over 5 seeds are only right if the t
// quantile at 4 degrees of freedom is.
#include "stats.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <vector>

using example_stats::student_t_quantile;

TEST_CASE("t quantile: the two-sided 95 % column of a t table") {
    // Critical values t_{0.975, df} (e.g. NIST/SEMATECH e-Handbook, table 1.4.2.7.3).
    struct row {
        double df, t;
    };
    const row table[] = {{1, 12.706}, {2, 4.303},  {3, 3.182},  {4, 2.776},  {5, 2.571},   {6, 2.447},
                         {7, 2.365},  {8, 2.306},  {9, 2.262},  {10, 2.228}, {15, 2.131},  {20, 2.086},
                         {29, 2.045}, {30, 2.042}, {60, 2.000}, {100, 1.984}};
    for (const auto& r : table) {
        INFO("df " << r.df);
        CHECK(student_t_quantile(0.975, r.df) == Approx(r.t).margin(0.0005));
    }
    // Other columns: 0.95 and 0.995.
    CHECK(student_t_quantile(0.95, 4) == Approx(2.132).margin(0.0005));
    CHECK(student_t_quantile(0.95, 9) == Approx(1.833).margin(0.0005));
    CHECK(student_t_quantile(0.995, 4) == Approx(4.604).margin(0.0005));
    CHECK(student_t_quantile(0.995, 1) == Approx(63.657).margin(0.0005));
    // Large df: the normal quantile.
    CHECK(student_t_quantile(0.975, 1e7) == Approx(1.959964).margin(1e-5));
}

TEST_CASE("t quantile: closed forms at 1 and 2 degrees of freedom") {
    // df 1 (Cauchy): tan(pi (q - 1/2)); df 2: (2q - 1) / sqrt(2 q (1 - q)).
    for (const double q : {0.6, 0.75, 0.9, 0.975, 0.99, 0.999}) {
        INFO("q " << q);
        CHECK(student_t_quantile(q, 1) == Approx(std::tan(std::numbers::pi * (q - 0.5))).epsilon(1e-10));
        CHECK(student_t_quantile(q, 2) == Approx((2 * q - 1) / std::sqrt(2 * q * (1 - q))).epsilon(1e-10));
        CHECK(student_t_quantile(1 - q, 2) == Approx(-(2 * q - 1) / std::sqrt(2 * q * (1 - q))).epsilon(1e-10));
    }
    CHECK(student_t_quantile(0.5, 3) == 0);
}

TEST_CASE("t interval: by hand for five paired differences") {
    // mean 0.2, sample std sqrt(0.1) (deviations -0.4 -0.2 0 0.2 0.4: squares 0.4 / 4),
    // half-width t_{0.975,4} * sqrt(0.1) / sqrt(5) = 2.776445 * 0.141421.
    const auto i = example_stats::t_interval({-0.2, 0.0, 0.2, 0.4, 0.6});
    CHECK(i.n == 5);
    CHECK(i.mean == Approx(0.2));
    CHECK(i.half_width == Approx(2.7764451 * std::sqrt(0.1 / 5)).epsilon(1e-6));
    CHECK(i.low() == Approx(0.2 - i.half_width));
    CHECK(std::isinf(example_stats::t_interval({0.5}).half_width));
}
