#include <childtune/select/top_p.hpp>

#include "data/percentile_kat.hpp"

#include "support/error_matcher.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

using childtune::named_scores;
using childtune::selection_rule;

namespace {

using test_support::error_with;

namespace kat = childtune_test::percentile_kat;

template <class T>
struct split_input {
    std::vector<std::string> names;
    std::vector<named_scores<T>> tensors;
};

// Cuts x into `pieces` tensors of uneven size (empty ones included).
template <class T>
split_input<T> split(const std::vector<T>& x, std::size_t pieces, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> cuts{0, x.size()};
    for (std::size_t i = 0; i + 1 < pieces; ++i) cuts.push_back(rng() % (x.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    split_input<T> out;
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) out.names.push_back("layer." + std::to_string(i) + ".weight");
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
        out.tensors.push_back({out.names[i], std::span<const T>(x.data() + cuts[i], cuts[i + 1] - cuts[i])});
    return out;
}

// Concatenated masks of a result, in tensor order.
std::vector<bool> flat_mask(const childtune::top_p_result& r) {
    std::vector<bool> out;
    for (const auto& e : r.masks.entries())
        for (std::size_t i = 0; i < e.mask.size(); ++i) out.push_back(e.mask.test(i));
    return out;
}

// numpy.percentile(x, (1 - p) * 100) for the 'linear' method, written from
// numpy 1.24's function_base.py on a sorted copy.
template <class T>
double numpy_percentile(std::vector<T> x, double p) {
    std::sort(x.begin(), x.end());
    const std::size_t n = x.size();
    const double q = ((1 - p) * 100) / 100;
    const double vi = static_cast<double>(n - 1) * q;
    double prev = std::floor(vi), next = prev + 1;
    if (vi >= static_cast<double>(n - 1)) prev = next = -1; // numpy: take the last element
    const auto at = [&](double i) { return i < 0 ? x[n - 1] : x[static_cast<std::size_t>(i)]; };
    const T a = at(prev), b = at(next);
    const double t = vi - prev;
    const T diff = static_cast<T>(b - a);
    volatile double scaled = static_cast<double>(diff) * (t >= 0.5 ? 1 - t : t);
    return t >= 0.5 ? static_cast<double>(b) - scaled : static_cast<double>(a) + scaled;
}

template <class T>
bool same_cut(T got, T expect) {
    if (std::isnan(expect)) return std::isnan(got);
    if (expect == 0) return got == 0;
    return std::bit_cast<childtune::detail::order_key_t<T>>(got) ==
           std::bit_cast<childtune::detail::order_key_t<T>>(expect);
}

template <class T>
void check_kat_row(const kat::kat_row& row, const std::vector<T>& x) {
    const auto& c = kat::cases[row.case_index];
    INFO("case " << c.name << " (n = " << c.n << "), p = " << row.p);
    const T cut = std::bit_cast<T>(static_cast<childtune::detail::order_key_t<T>>(row.cut_bits));

    // The pieces: numpy's neighbours and interpolation, in double, before the cast.
    const double vi = childtune::detail::numpy_virtual_index(x.size(), row.p);
    const std::vector<std::span<const T>> whole{std::span<const T>(x)};
    double polar;
    if (vi >= static_cast<double>(x.size() - 1)) {
        const T last = childtune::select_kth(whole, x.size() - 1).value;
        polar = childtune::detail::numpy_lerp(last, last, vi + 1);
    } else {
        const auto pair = childtune::select_kth_pair(whole, static_cast<std::size_t>(std::floor(vi)));
        polar = childtune::detail::numpy_lerp(pair.kth.value, pair.next, vi - std::floor(vi));
    }
    REQUIRE(same_cut(polar, row.numpy_polar));
    REQUIRE(same_cut(numpy_percentile(x, row.p), row.numpy_polar));

    // The whole selection, on uneven tensors.
    for (const std::size_t pieces : {std::size_t{1}, std::size_t{4}}) {
        const auto in = split(x, pieces, row.case_index);
        const auto r = childtune::select_top_p(in.tensors, row.p);
        REQUIRE(same_cut(static_cast<T>(r.threshold), cut));
        REQUIRE((std::isnan(r.threshold) || r.threshold == static_cast<double>(static_cast<T>(r.threshold))));
        REQUIRE(r.kept == row.kept);
        REQUIRE(r.masks.total_kept() == row.kept);
        const auto bits = flat_mask(r);
        for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(bits[i] == (x[i] >= cut));
    }
}

// Exactly round(p*N) elements: the largest, ties broken by flattened position.
template <class T>
std::vector<bool> brute_exact_count(const std::vector<T>& x, double p) {
    const auto keep = static_cast<std::size_t>(std::llround(p * static_cast<double>(x.size())));
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] > x[b]; });
    std::vector<bool> out(x.size(), false);
    for (std::size_t i = 0; i < keep; ++i) out[order[i]] = true;
    return out;
}

template <class T>
std::vector<T> tied_scores(std::size_t n, std::uint64_t seed, int levels) {
    std::mt19937_64 rng(seed);
    std::vector<T> x(n);
    for (auto& v : x) {
        const auto r = rng() % 10;
        if (r < 2) v = T(0);
        else if (r < 6) v = static_cast<T>(rng() % static_cast<std::uint64_t>(levels)) * T(0.125);
        else v = static_cast<T>(std::ldexp(static_cast<double>(rng() >> 11), -60));
    }
    return x;
}

} // namespace

TEST_CASE("percentile selection reproduces numpy 1.24 on the known answers", "[select][top_p][kat]") {
    std::size_t checked = 0;
    for (const auto& row : kat::rows) {
        const auto& c = kat::cases[row.case_index];
        if (c.is_double) check_kat_row(row, kat::make_double(c));
        else check_kat_row(row, kat::make_float(c));
        ++checked;
    }
    REQUIRE(checked == std::size(kat::rows));
}

TEMPLATE_TEST_CASE("percentile selection matches a sort-based numpy percentile", "[select][top_p]", float, double) {
    using T = TestType;
    for (const std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{64}, std::size_t{1000},
                                std::size_t{300'007}}) {
        for (const int levels : {1, 5, 1000}) {
            const auto x = tied_scores<T>(n, n * 31 + static_cast<std::size_t>(levels), levels);
            for (const double p : {1e-9, 1e-6, 0.001, 0.3, 0.5, 0.7, 1.0}) {
                INFO("n = " << n << ", levels = " << levels << ", p = " << p);
                const T cut = static_cast<T>(numpy_percentile(x, p));
                const auto in = split(x, 5, n);
                const auto r = childtune::select_top_p(in.tensors, p);
                REQUIRE(same_cut(static_cast<T>(r.threshold), cut));
                const auto bits = flat_mask(r);
                std::size_t kept = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    REQUIRE(bits[i] == (x[i] >= cut));
                    kept += x[i] >= cut;
                }
                REQUIRE(r.kept == kept);
            }
        }
    }
}

TEMPLATE_TEST_CASE("exact_count keeps round(p*N) elements, ties broken by position", "[select][top_p]", float, double) {
    using T = TestType;
    for (const std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{130}, std::size_t{4099},
                                std::size_t{300'001}}) {
        for (const int levels : {1, 3, 1000}) {
            const auto x = tied_scores<T>(n, n + static_cast<std::size_t>(levels), levels);
            for (const double p : {1e-9, 0.001, 0.25, 0.3, 0.5, 0.999, 1.0}) {
                INFO("n = " << n << ", levels = " << levels << ", p = " << p);
                const auto in = split(x, 6, n * 7);
                const auto r = childtune::select_top_p(in.tensors, p, selection_rule::exact_count);
                const auto expect = brute_exact_count(x, p);
                const auto keep = static_cast<std::size_t>(std::llround(p * static_cast<double>(n)));
                REQUIRE(r.kept == keep);
                REQUIRE(r.masks.total_kept() == keep);
                REQUIRE(flat_mask(r) == expect);
                if (keep == 0) {
                    REQUIRE(r.threshold == std::numeric_limits<double>::infinity());
                } else {
                    std::vector<T> sorted = x;
                    std::sort(sorted.begin(), sorted.end(), std::greater<>());
                    REQUIRE(r.threshold == static_cast<double>(sorted[keep - 1]));
                }
            }
        }
    }
}

TEST_CASE("exact_count rounds halves away from zero", "[select][top_p]") {
    const std::vector<float> x{4, 3, 2, 1};
    const std::vector<named_scores<float>> in{{"a", x}};
    REQUIRE(childtune::select_top_p(in, 0.125, selection_rule::exact_count).kept == 1); // 0.5 -> 1
    REQUIRE(childtune::select_top_p(in, 0.375, selection_rule::exact_count).kept == 2); // 1.5 -> 2
    REQUIRE(childtune::select_top_p(in, 0.1, selection_rule::exact_count).kept == 0);
    REQUIRE(childtune::select_top_p(in, 1.0, selection_rule::exact_count).kept == 4);
}

TEST_CASE("percentile keeps every element tied with the cut", "[select][top_p]") {
    // The reference rule: with most scores exactly zero, p = 0.3 keeps them all.
    std::vector<float> x(100, 0.0f);
    x[7] = 1.0f;
    x[8] = 2.0f;
    const std::vector<named_scores<float>> in{{"layer.0", x}};
    const auto r = childtune::select_top_p(in, 0.3);
    REQUIRE(r.threshold == 0.0);
    REQUIRE(r.kept == 100);
    const auto exact = childtune::select_top_p(in, 0.3, selection_rule::exact_count);
    REQUIRE(exact.kept == 30);
    REQUIRE(exact.masks.find("layer.0")->test(8));
    REQUIRE(exact.masks.find("layer.0")->test(0));
    REQUIRE(exact.masks.find("layer.0")->test(29)); // 7 zeros before the two winners, 21 after
    REQUIRE(!exact.masks.find("layer.0")->test(30));
}

TEMPLATE_TEST_CASE("top-p masks do not depend on the backend or its thread count", "[select][top_p]", float, double) {
    using T = TestType;
    const auto x = tied_scores<T>(1'000'003, 99, 4);
    const auto in = split(x, 11, 5);
    for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
        for (const double p : {0.01, 0.3, 0.77}) {
            const auto ref = childtune::select_top_p(in.tensors, p, rule, childtune::serial_backend{});
            for (const int threads : {1, 2, 3}) {
                const auto r = childtune::select_top_p(in.tensors, p, rule, childtune::openmp_backend{threads});
                REQUIRE(r.masks == ref.masks);
                REQUIRE(r.kept == ref.kept);
                REQUIRE(std::bit_cast<std::uint64_t>(r.threshold) == std::bit_cast<std::uint64_t>(ref.threshold));
            }
        }
    }
}

TEST_CASE("top-p masks are keyed by tensor name, in the order given", "[select][top_p]") {
    const std::vector<float> a{1, 2, 3}, b{}, c{10, 0.5f};
    const std::vector<named_scores<float>> in{{"encoder.layer.1", a}, {"empty", b}, {"encoder.layer.0", c}};
    const auto r = childtune::select_top_p(in, 0.4, selection_rule::exact_count);
    REQUIRE(r.masks.tensor_count() == 3);
    REQUIRE(r.masks.entries()[0].name == "encoder.layer.1");
    REQUIRE(r.masks.entries()[1].name == "empty");
    REQUIRE(r.masks.entries()[1].mask.size() == 0);
    REQUIRE(r.masks.entries()[2].name == "encoder.layer.0");
    REQUIRE(r.kept == 2);
    REQUIRE(r.masks.find("encoder.layer.0")->test(0));
    REQUIRE(r.masks.find("encoder.layer.1")->test(2));
}

TEST_CASE("top-p selection rejects bad input", "[select][top_p]") {
    const std::vector<float> a{1, 2, 3}, nan{1, std::numeric_limits<float>::quiet_NaN()}, none{};
    const std::vector<named_scores<float>> ok{{"a", a}};
    for (const double p : {0.0, -0.5, 1.0000001, std::numeric_limits<double>::quiet_NaN()})
        REQUIRE_THROWS_MATCHES(childtune::select_top_p(ok, p), childtune::error, error_with("p = "));
    REQUIRE_THROWS_MATCHES(childtune::select_top_p(std::vector<named_scores<float>>{{"a", a}, {"a", a}}, 0.5),
                           childtune::error, error_with("'a' is given twice"));
    REQUIRE_THROWS_MATCHES(childtune::select_top_p(std::vector<named_scores<float>>{{"", a}}, 0.5), childtune::error,
                           error_with("name must not be empty"));
    REQUIRE_THROWS_MATCHES(childtune::select_top_p(std::vector<named_scores<float>>{{"x", none}}, 0.5),
                           childtune::error, error_with("no score"));
    REQUIRE_THROWS_MATCHES(childtune::select_top_p(std::vector<named_scores<float>>{}, 0.5), childtune::error,
                           error_with("no score"));
    REQUIRE_THROWS_MATCHES(childtune::select_top_p(std::vector<named_scores<float>>{{"a", a}, {"bad", nan}}, 0.5),
                           childtune::error, error_with("score 1 of tensor 'bad' is NaN"));
}

TEST_CASE("bad input: top-p p at the edges, infinite scores and empty tensors", "[select][top_p][bad_input]") {
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> a{1, -inf, inf, 0, -0.0f}, none{};
    const std::vector<named_scores<float>> ok{{"a", a}, {"none", none}};
    for (const double p : {-0.0, std::nextafter(1.0, 2.0), -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::infinity()}) {
        REQUIRE_THROWS_MATCHES(childtune::select_top_p(ok, p), childtune::error, error_with("outside (0, 1]"));
        REQUIRE_THROWS_MATCHES(childtune::select_top_p(ok, p, selection_rule::exact_count), childtune::error,
                               error_with("outside (0, 1]"));
    }
    // ±Inf are ordinary scores (only NaN has no place in the order).
    const auto all = childtune::select_top_p(ok, 1.0, selection_rule::exact_count);
    CHECK(all.kept == 5);
    CHECK(all.masks.find("none")->size() == 0);
    for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
        const auto top = childtune::select_top_p(ok, 0.2, rule);
        CHECK(top.kept == 1);
        CHECK(top.masks.find("a")->test(2));
    }
    // Deliberately reference-compatible: numpy's percentile interpolates to NaN
    // next to an infinite score (p = 1: -inf + inf*0; tiny p: inf - inf), and the
    // reference's `score >= NaN` keeps nothing (the numpy known answers pin it).
    const double tiny = std::numeric_limits<double>::denorm_min();
    for (const double p : {1.0, tiny}) {
        const auto r = childtune::select_top_p(ok, p);
        CHECK(std::isnan(r.threshold));
        CHECK(r.kept == 0);
    }
    const std::vector<float> finite{1, 5, 2};
    CHECK(childtune::select_top_p(std::vector<named_scores<float>>{{"f", finite}}, tiny).kept == 1);
    CHECK(childtune::select_top_p(std::vector<named_scores<float>>{{"f", finite}}, 1.0).kept == 3);
    const auto nothing = childtune::select_top_p(ok, tiny, selection_rule::exact_count);
    CHECK(nothing.kept == 0);
    CHECK(nothing.threshold == std::numeric_limits<double>::infinity());
}
