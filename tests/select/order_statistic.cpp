#include <childtune/select/order_statistic.hpp>

#include "support/error_matcher.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

using childtune::openmp_backend;
using childtune::serial_backend;

namespace {

using test_support::error_with;

template <class T>
struct brute_force {
    T value;
    std::size_t less, equal;
    T next;
};

// The definition itself: sort a copy, count with the ordinary comparisons.
template <class T>
brute_force<T> brute_kth(const std::vector<T>& sorted, std::size_t k) {
    const T v = sorted[k];
    const auto lo = std::lower_bound(sorted.begin(), sorted.end(), v);
    const auto hi = std::upper_bound(sorted.begin(), sorted.end(), v);
    return {v, static_cast<std::size_t>(lo - sorted.begin()), static_cast<std::size_t>(hi - lo),
            k + 1 < sorted.size() ? sorted[k + 1] : v};
}

// Values that stress the key: ties, both zeros, denormals, infinities, negatives.
template <class T>
std::vector<T> nasty_values(std::size_t n, std::mt19937_64& rng, int distinct) {
    using lim = std::numeric_limits<T>;
    const std::vector<T> specials = {T(0),           -T(0),          lim::denorm_min(), -lim::denorm_min(),
                                     lim::min(),     -lim::min(),    lim::infinity(),   -lim::infinity(),
                                     lim::max(),     -lim::lowest(), T(1),              T(-1),
                                     lim::epsilon(), T(0.5)};
    std::vector<T> levels(static_cast<std::size_t>(distinct));
    std::normal_distribution<double> normal(0.0, 1e3);
    for (auto& l : levels) l = static_cast<T>(normal(rng) * std::pow(10.0, std::uniform_int_distribution<int>(-30, 30)(rng)));
    std::vector<T> out(n);
    for (auto& x : out) {
        const auto r = rng() % 16;
        if (r < 3) x = specials[rng() % specials.size()];
        else if (r < 10) x = levels[rng() % levels.size()];
        else x = static_cast<T>(normal(rng));
    }
    return out;
}

template <class T>
std::vector<std::span<const T>> split(const std::vector<T>& x, std::mt19937_64& rng, std::size_t pieces) {
    std::vector<std::size_t> cuts{0, x.size()};
    for (std::size_t i = 0; i + 1 < pieces; ++i) cuts.push_back(x.empty() ? 0 : rng() % (x.size() + 1));
    cuts.push_back(0); // an empty segment at the front
    cuts.push_back(x.size()); // and one at the back
    std::sort(cuts.begin(), cuts.end());
    std::vector<std::span<const T>> segs;
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) segs.emplace_back(x.data() + cuts[i], cuts[i + 1] - cuts[i]);
    return segs;
}

template <class T>
bool same_number(T a, T b) {
    return a == b && (a != 0 || !std::signbit(a)); // zeros are reported as +0
}

template <class T, class Backend = childtune::default_backend>
void check_against_sort(const std::vector<std::span<const T>>& segs, const std::vector<T>& sorted, std::size_t k,
                        const Backend& backend = {}) {
    const auto expect = brute_kth(sorted, k);
    const auto got = childtune::select_kth_pair(segs, k, backend);
    INFO("k = " << k << " of " << sorted.size() << ", expected " << expect.value << " next " << expect.next);
    REQUIRE(same_number(got.kth.value, expect.value == 0 ? T(0) : expect.value));
    REQUIRE(got.kth.less == expect.less);
    REQUIRE(got.kth.equal == expect.equal);
    REQUIRE(same_number(got.next, expect.next == 0 ? T(0) : expect.next));
    const auto single = childtune::select_kth(segs, k, backend);
    REQUIRE(same_number(single.value, got.kth.value));
    REQUIRE(single.less == got.kth.less);
    REQUIRE(single.equal == got.kth.equal);
}

template <class T>
std::vector<T> sorted_copy(const std::vector<T>& x) {
    auto s = x;
    std::sort(s.begin(), s.end());
    return s;
}

} // namespace

TEMPLATE_TEST_CASE("order keys sort like the numbers they encode", "[select][order_statistic]", float, double) {
    using T = TestType;
    using lim = std::numeric_limits<T>;
    const std::vector<T> ascending = {-lim::infinity(), lim::lowest(), T(-1), -lim::min(), -lim::denorm_min(),
                                      T(0),             lim::denorm_min(), lim::min(), T(1), lim::max(),
                                      lim::infinity()};
    for (std::size_t i = 0; i + 1 < ascending.size(); ++i)
        REQUIRE(childtune::detail::order_key(ascending[i]) < childtune::detail::order_key(ascending[i + 1]));
    REQUIRE(childtune::detail::order_key(-T(0)) == childtune::detail::order_key(T(0)));
    for (const T v : ascending)
        if (v != 0) REQUIRE(childtune::detail::score_from_key<T>(childtune::detail::order_key(v)) == v);
    REQUIRE(!std::signbit(childtune::detail::score_from_key<T>(childtune::detail::order_key(-T(0)))));
}

TEMPLATE_TEST_CASE("select_kth matches sorting for every k of small inputs", "[select][order_statistic]", float,
                   double) {
    using T = TestType;
    std::mt19937_64 rng(42);
    for (int round = 0; round < 60; ++round) {
        const std::size_t n = 1 + rng() % 48;
        const auto x = nasty_values<T>(n, rng, 1 + static_cast<int>(rng() % 6));
        const auto segs = split(x, rng, 1 + rng() % 5);
        const auto sorted = sorted_copy(x);
        for (std::size_t k = 0; k < n; ++k) check_against_sort(segs, sorted, k);
    }
}

TEMPLATE_TEST_CASE("select_kth matches sorting on inputs that need the histogram passes", "[select][order_statistic]",
                   float, double) {
    using T = TestType;
    std::mt19937_64 rng(7);
    for (const int distinct : {3, 40, 5000}) {
        const std::size_t n = 300'001 + rng() % 1000;
        const auto x = nasty_values<T>(n, rng, distinct);
        const auto segs = split(x, rng, 7);
        const auto sorted = sorted_copy(x);
        std::vector<std::size_t> ks = {0, 1, n / 2, n - 2, n - 1};
        for (int i = 0; i < 12; ++i) ks.push_back(rng() % n);
        // The last copy of a value: its successor is a different number.
        for (int i = 0; i < 6; ++i) {
            const auto k = rng() % n;
            const auto last = static_cast<std::size_t>(std::upper_bound(sorted.begin(), sorted.end(), sorted[k]) -
                                                       sorted.begin()) - 1;
            ks.push_back(last);
        }
        for (const auto k : ks) check_against_sort(segs, sorted, k);
    }
}

TEMPLATE_TEST_CASE("select_kth finishes in the last histogram pass when the candidates never fit in memory",
                   "[select][order_statistic]", float, double) {
    using T = TestType;
    // 300000 values 1 + j ulp, j < 1024: all share every key bit but the last
    // digit, so no pass narrows them below the in-memory limit; 2 and 3 follow.
    std::vector<T> x;
    for (std::size_t i = 0; i < 300'000; ++i) x.push_back(T(1) + static_cast<T>(i % 1024) * std::numeric_limits<T>::epsilon());
    x.push_back(T(3));
    x.push_back(T(2));
    std::mt19937_64 rng(3);
    std::shuffle(x.begin(), x.end(), rng);
    const auto segs = split(x, rng, 3);
    const auto sorted = sorted_copy(x);
    const std::size_t group = 300'000;
    for (const std::size_t k : {std::size_t{0}, std::size_t{292}, std::size_t{293}, group / 2, group - 2,
                                group - 1, group, group + 1})
        check_against_sort(segs, sorted, k);
}

TEMPLATE_TEST_CASE("select_kth_pair finds a successor outside the candidates of the last pass",
                   "[select][order_statistic]", float, double) {
    using T = TestType;
    // 200000 ones share their top digit and fit the in-memory finish; the
    // successor of the last one lives in another top-digit bucket.
    std::vector<T> x(200'000, T(1));
    x.resize(400'000, T(4));
    x.push_back(T(-2));
    std::mt19937_64 rng(5);
    std::shuffle(x.begin(), x.end(), rng);
    const auto segs = split(x, rng, 4);
    const auto sorted = sorted_copy(x);
    for (const std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{200'000}, std::size_t{200'001},
                                std::size_t{400'000}})
        check_against_sort(segs, sorted, k);
}

TEMPLATE_TEST_CASE("select_kth does not depend on the backend or its thread count", "[select][order_statistic]", float,
                   double) {
    using T = TestType;
    std::mt19937_64 rng(11);
    const auto x = nasty_values<T>(700'000, rng, 100);
    const auto segs = split(x, rng, 9);
    const auto sorted = sorted_copy(x);
    for (const std::size_t k : {std::size_t{17}, std::size_t{350'000}, std::size_t{699'990}}) {
        check_against_sort(segs, sorted, k, serial_backend{});
        for (const int threads : {1, 2, 3}) check_against_sort(segs, sorted, k, openmp_backend{threads});
    }
}

TEMPLATE_TEST_CASE("select_kth rejects NaN, empty input and k out of range", "[select][order_statistic]", float,
                   double) {
    using T = TestType;
    std::vector<T> small{T(1), T(2), std::numeric_limits<T>::quiet_NaN()};
    std::vector<T> large(400'000, T(1));
    large[333'333] = -std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> tail{T(5)};
    for (const auto* x : {&small, &large}) {
        const std::vector<std::span<const T>> segs{std::span<const T>(tail), std::span<const T>(*x)};
        REQUIRE_THROWS_MATCHES(childtune::select_kth(segs, 0), childtune::error,
                               error_with("NaN") && error_with("segment 1"));
    }
    REQUIRE_THROWS_MATCHES(childtune::select_kth(std::vector<std::span<const T>>{std::span<const T>(large)}, 0),
                           childtune::error, error_with("score 333333"));
    const std::vector<std::span<const T>> none{std::span<const T>()};
    REQUIRE_THROWS_MATCHES(childtune::select_kth(none, 0), childtune::error, error_with("no element"));
    const std::vector<std::span<const T>> one{std::span<const T>(tail)};
    REQUIRE_THROWS_MATCHES(childtune::select_kth_pair(one, 1), childtune::error,
                           error_with("k = 1 is out of range"));
    const auto last = childtune::select_kth_pair(one, 0);
    REQUIRE(last.kth.value == T(5));
    REQUIRE(last.next == T(5));
}
