#include <childtune/mask/fisher.hpp>

#include "support/error_matcher.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

using childtune::bfloat16;
using childtune::fisher_accumulator;
using childtune::fisher_options;
using childtune::float16;
using childtune::selection_rule;
using childtune::tensor_view;

namespace {

using test_support::error_with;

// What the reference loop does per batch and tensor, written plainly:
// clip_grad_norm_(param, max_norm) on the tensor alone, then score += grad**2 / N.
template <class Score>
struct naive_fisher {
    double max_norm = 0;
    std::size_t n = 0;
    std::map<std::string, std::vector<Score>> sums;
    std::size_t batches = 0;

    template <class G>
    void accumulate(const std::string& name, const std::vector<G>& g) {
        double sum = 0;
        for (const G& v : g) sum += childtune::detail::widen<double>(v) * childtune::detail::widen<double>(v);
        const double norm = std::sqrt(sum);
        const double coef = max_norm > 0 ? std::min(1.0, max_norm / (norm + 1e-6)) : 1.0;
        auto& s = sums[name];
        s.resize(g.size(), Score(0));
        for (std::size_t i = 0; i < g.size(); ++i) {
            const Score v = childtune::detail::widen<Score>(g[i]) * static_cast<Score>(coef);
            if (n != 0) s[i] = s[i] + (v * v) / static_cast<Score>(n);
            else s[i] = s[i] + v * v;
        }
    }
    std::vector<Score> scores(const std::string& name) const {
        auto s = sums.at(name);
        if (n == 0)
            for (auto& v : s) v = v / static_cast<Score>(batches);
        return s;
    }
};

// Multiples of 2^-8: squares and their sums are exact in double whatever the
// summation order, so the blocked norm equals the naive one bit for bit.
template <class G>
std::vector<G> dyadic_gradient(std::size_t size, std::mt19937_64& rng, int scale) {
    std::vector<G> g(size);
    for (auto& v : g) {
        const auto k = static_cast<int>(rng() % 2001) - 1000;
        v = childtune::detail::narrow<G>(static_cast<float>(std::ldexp(static_cast<double>(k * scale), -8)));
    }
    return g;
}

template <class Score>
std::map<std::string, std::vector<Score>> snapshot(const fisher_accumulator<Score>& f) {
    std::map<std::string, std::vector<Score>> out;
    for (const auto& name : f.names()) {
        const auto raw = f.raw_scores(name);
        out[name] = std::vector<Score>(raw.begin(), raw.end());
    }
    return out;
}

} // namespace

TEMPLATE_TEST_CASE("fisher scores follow the reference loop exactly", "[mask][fisher]", float, double) {
    using Score = TestType;
    const std::vector<std::pair<std::string, std::size_t>> shapes = {
        {"encoder.layer.0.attention.weight", 96}, {"encoder.layer.0.bias", 7}, {"encoder.layer.1.weight", 70'000}};
    for (const double max_norm : {0.0, 1.0, 1e6}) {
        for (const std::size_t n : {std::size_t{0}, std::size_t{3}}) {
            INFO("max_grad_norm = " << max_norm << ", num_batches = " << n);
            std::mt19937_64 rng(static_cast<std::uint64_t>(max_norm) + n);
            fisher_accumulator<Score> f({max_norm, n});
            naive_fisher<Score> ref{max_norm, n, {}, 0};
            for (const auto& [name, size] : shapes) f.add_tensor(name, size);
            for (int batch = 0; batch < 3; ++batch) {
                // Gradients of every storage type, one per tensor and batch.
                const auto g32 = dyadic_gradient<float>(shapes[0].second, rng, 1 + batch);
                const auto g16 = dyadic_gradient<bfloat16>(shapes[1].second, rng, 3);
                const auto g64 = dyadic_gradient<double>(shapes[2].second, rng, 1);
                f.accumulate(shapes[0].first, g32);
                f.accumulate(shapes[1].first, tensor_view<const bfloat16>(g16));
                f.accumulate(shapes[2].first, std::span<const double>(g64));
                ref.accumulate(shapes[0].first, g32);
                ref.accumulate(shapes[1].first, g16);
                ref.accumulate(shapes[2].first, g64);
                f.end_batch();
                ++ref.batches;
            }
            REQUIRE(f.batches() == 3);
            for (const auto& [name, size] : shapes) {
                const auto got = f.scores(name);
                const auto expect = ref.scores(name);
                REQUIRE(got.size() == size);
                for (std::size_t i = 0; i < size; ++i) REQUIRE(got[i] == expect[i]);
            }
        }
    }
}

TEMPLATE_TEST_CASE("fisher scores of arbitrary gradients agree with the naive loop to rounding",
                   "[mask][fisher]", float, double) {
    using Score = TestType;
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    fisher_accumulator<Score> f({0.5, 0});
    naive_fisher<Score> ref{0.5, 0, {}, 0};
    f.add_tensor("layer.w", 200'003);
    f.add_tensor("layer.h", 77);
    for (int batch = 0; batch < 4; ++batch) {
        std::vector<float> w(200'003);
        std::vector<float16> h(77);
        for (auto& v : w) v = normal(rng) * static_cast<float>(batch + 1);
        for (auto& v : h) v = float16(normal(rng));
        f.accumulate("layer.w", w);
        f.accumulate("layer.h", h);
        ref.accumulate("layer.w", w);
        ref.accumulate("layer.h", h);
        f.end_batch();
        ++ref.batches;
    }
    for (const char* name : {"layer.w", "layer.h"}) {
        const auto got = f.scores(name);
        const auto expect = ref.scores(name);
        for (std::size_t i = 0; i < got.size(); ++i)
            REQUIRE(got[i] == Approx(expect[i]).epsilon(1e-5).margin(std::numeric_limits<Score>::min()));
    }
}

TEST_CASE("fisher scores do not depend on the backend or its thread count", "[mask][fisher]") {
    const auto run = [](const auto& backend) {
        std::mt19937_64 rng(9);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        fisher_accumulator<float> f({1.0, 0});
        f.add_tensor("layer.big", 300'001);
        for (int batch = 0; batch < 3; ++batch) {
            std::vector<float> g(300'001);
            for (auto& v : g) v = normal(rng);
            f.accumulate("layer.big", tensor_view<const float>(g), backend);
            f.end_batch();
        }
        return std::pair{snapshot(f), f.select(0.2, selection_rule::percentile, backend).masks};
    };
    const auto ref = run(childtune::serial_backend{});
    for (const int threads : {1, 2, 3}) {
        const auto got = run(childtune::openmp_backend{threads});
        REQUIRE(got.first == ref.first);
        REQUIRE(got.second == ref.second);
    }
}

TEMPLATE_TEST_CASE("fisher select is the global top-p of the scores", "[mask][fisher]", float, double) {
    using Score = TestType;
    for (const std::size_t n : {std::size_t{0}, std::size_t{2}}) {
        std::mt19937_64 rng(n);
        fisher_accumulator<Score> f({0.0, n});
        f.add_tensor("layer.1", 1000);
        f.add_tensor("layer.0", 333);
        for (int batch = 0; batch < 2; ++batch) {
            f.accumulate("layer.1", dyadic_gradient<float>(1000, rng, 1));
            f.accumulate("layer.0", dyadic_gradient<float>(333, rng, 2));
            f.end_batch();
        }
        const auto s1 = f.scores("layer.1"), s0 = f.scores("layer.0");
        const std::vector<childtune::named_scores<Score>> in{{"layer.1", s1}, {"layer.0", s0}};
        for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
            for (const double p : {0.001, 0.3, 1.0}) {
                const auto got = f.select(p, rule);
                const auto expect = childtune::select_top_p(in, p, rule);
                REQUIRE(got.masks == expect.masks);
                REQUIRE(got.kept == expect.kept);
                REQUIRE(got.threshold == expect.threshold);
                REQUIRE(got.masks.entries()[0].name == "layer.1");
            }
        }
    }
}

TEST_CASE("fisher clipping rescales a double gradient whose squares overflow", "[mask][fisher]") {
    fisher_accumulator<double> f({2.0, 1});
    f.add_tensor("layer", 2);
    const std::vector<double> g{3e200, 4e200};
    f.accumulate("layer", g);
    f.end_batch();
    const auto s = f.scores("layer");
    REQUIRE(s[0] == Approx(1.2 * 1.2));
    REQUIRE(s[1] == Approx(1.6 * 1.6));
}

TEMPLATE_TEST_CASE("fisher accumulator rejects bad input and stays unchanged", "[mask][fisher]", float, double) {
    using Score = TestType;
    REQUIRE_THROWS_MATCHES(fisher_accumulator<Score>({-1.0, 0}), childtune::error,
                           error_with("max_grad_norm"));
    REQUIRE_THROWS_MATCHES(fisher_accumulator<Score>({std::numeric_limits<double>::quiet_NaN(), 0}), childtune::error,
                           error_with("max_grad_norm"));

    fisher_accumulator<Score> f({1.0, 2});
    f.add_tensor("layer.a", 4);
    f.add_tensor("layer.b", 100'000);
    std::mt19937_64 rng(4);
    const auto ga = dyadic_gradient<float>(4, rng, 1);
    const auto gb = dyadic_gradient<float>(100'000, rng, 1);
    f.accumulate("layer.a", ga);
    f.accumulate("layer.b", gb);
    f.end_batch();
    const auto before = snapshot(f);
    const auto unchanged = [&] {
        REQUIRE(snapshot(f) == before);
        REQUIRE(f.batches() == 1);
        REQUIRE(f.tensor_count() == 2);
    };

    REQUIRE_THROWS_MATCHES(f.add_tensor("layer.a", 4), childtune::error, error_with("'layer.a' added twice"));
    REQUIRE_THROWS_MATCHES(f.add_tensor("", 4), childtune::error, error_with("must not be empty"));
    REQUIRE_THROWS_MATCHES(f.add_tensor("layer.c", 0), childtune::error, error_with("'layer.c' has no element"));
    unchanged();

    REQUIRE_THROWS_MATCHES(f.accumulate("layer.x", ga), childtune::error, error_with("unknown tensor 'layer.x'"));
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.a", gb), childtune::error,
                           error_with("'layer.a' has 100000 elements"));
    auto nan_b = gb;
    nan_b[77'777] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.b", nan_b), childtune::error,
                           error_with("'layer.b' is not finite at element 77777"));
    const std::vector<bfloat16> inf_a{bfloat16(1.0f), bfloat16(std::numeric_limits<float>::infinity()), bfloat16(0.0f),
                                      bfloat16(0.0f)};
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.a", inf_a), childtune::error,
                           error_with("'layer.a' is not finite at element 1"));
    const std::vector<double> inf64{0.0, 0.0, 0.0, -std::numeric_limits<double>::infinity()};
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.a", inf64), childtune::error,
                           error_with("not finite at element 3"));
    REQUIRE_THROWS_MATCHES(f.select(0.0), childtune::error, error_with("p = "));
    REQUIRE_THROWS_MATCHES(f.select(1.5, selection_rule::exact_count), childtune::error, error_with("p = "));
    REQUIRE_THROWS_MATCHES(f.scores("nope"), childtune::error, error_with("unknown tensor 'nope'"));
    unchanged();

    // A tensor twice in one batch; a batch in progress blocks select().
    f.accumulate("layer.a", ga);
    const auto mid = snapshot(f);
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.a", ga), childtune::error,
                           error_with("'layer.a' was already accumulated in this batch"));
    REQUIRE_THROWS_MATCHES(f.select(0.5), childtune::error, error_with("middle of a batch"));
    REQUIRE_THROWS_MATCHES(f.add_tensor("layer.c", 3), childtune::error, error_with("middle of a batch"));
    REQUIRE(snapshot(f) == mid);
    f.end_batch();

    // num_batches = 2 have ended: a third batch is refused.
    const auto full = snapshot(f);
    REQUIRE_THROWS_MATCHES(f.accumulate("layer.b", gb), childtune::error, error_with("all 2 batches"));
    REQUIRE_THROWS_MATCHES(f.end_batch(), childtune::error, error_with("all 2 batches"));
    REQUIRE(snapshot(f) == full);
    REQUIRE(f.batches() == 2);

    // The accumulator still works, and matches one that never saw the bad calls.
    fisher_accumulator<Score> clean({1.0, 2});
    clean.add_tensor("layer.a", 4);
    clean.add_tensor("layer.b", 100'000);
    clean.accumulate("layer.a", ga);
    clean.accumulate("layer.b", gb);
    clean.end_batch();
    clean.accumulate("layer.a", ga);
    clean.end_batch();
    REQUIRE(snapshot(clean) == full);
    REQUIRE(clean.select(0.3).masks == f.select(0.3).masks);

    f.reset();
    REQUIRE(f.batches() == 0);
    for (const auto& [name, s] : snapshot(f))
        for (const auto v : s) REQUIRE(v == Score(0));
    REQUIRE_THROWS_MATCHES(f.select(0.5), childtune::error, error_with("before any batch"));
}

TEST_CASE("bad input: fisher accumulator sizes, clipping norms and p at the edges", "[mask][fisher][bad_input]") {
    REQUIRE_THROWS_MATCHES(fisher_accumulator<float>({std::numeric_limits<double>::infinity(), 0}), childtune::error,
                           error_with("max_grad_norm"));
    REQUIRE_THROWS_MATCHES(fisher_accumulator<float>({-0.5, 0}), childtune::error, error_with("max_grad_norm"));
    CHECK_NOTHROW(fisher_accumulator<float>({-0.0, 0})); // -0 == 0: clipping off

    fisher_accumulator<float> f({0.0, 1});
    f.add_tensor("layer.a", 3);
    // A size no allocation can have is refused naming the tensor (instead of
    // std::vector's std::length_error).
    for (const std::size_t n : {childtune::detail::max_tensor_elements<float> + 1, std::numeric_limits<std::size_t>::max()})
        REQUIRE_THROWS_MATCHES(f.add_tensor("layer.huge", n), childtune::error,
                               error_with("tensor 'layer.huge' has " + std::to_string(n) + " elements"));
    REQUIRE(f.tensor_count() == 1);
    // A gradient view of a made-up size is refused before it is read.
    const std::vector<float> g{1.0f, 2.0f, 3.0f};
    REQUIRE_THROWS_MATCHES(f.accumulate<float>("layer.a", tensor_view<const float>(g.data(), std::numeric_limits<std::size_t>::max())),
                           childtune::error, error_with("elements, the tensor has 3"));
    f.accumulate("layer.a", g);
    f.end_batch();
    for (const double p : {-0.0, std::nextafter(1.0, 2.0), std::numeric_limits<double>::quiet_NaN()})
        REQUIRE_THROWS_MATCHES(f.select(p), childtune::error, error_with("outside (0, 1]"));
    // The edges: p = 1 keeps everything, the smallest positive p keeps the top
    // score (percentile) or nothing (exact_count: round(p*N) = 0).
    CHECK(f.select(1.0).kept == 3);
    CHECK(f.select(std::numeric_limits<double>::denorm_min()).kept == 1);
    CHECK(f.select(std::numeric_limits<double>::denorm_min(), selection_rule::exact_count).kept == 0);
}

TEST_CASE("no silent no-ops: select() after another number of batches than the declared num_batches is refused",
          "[mask][fisher][bad_input]") {
    fisher_accumulator<float> f({.max_grad_norm = 0, .num_batches = 3});
    f.add_tensor("layer.a", 4);
    const std::vector<float> g{1.0f, -2.0f, 0.5f, 0.25f};
    const auto ended_batch = [&] {
        f.accumulate("layer.a", g);
        f.end_batch();
    };
    // None accumulated.
    REQUIRE_THROWS_MATCHES(f.select(0.5), childtune::error, error_with("before any batch ended"));
    ended_batch();
    ended_batch();
    const auto before = snapshot(f);
    REQUIRE_THROWS_MATCHES(f.select(0.5), childtune::error,
                           error_with("fisher_accumulator: select() after 2 batches, but num_batches = 3 was declared"));
    REQUIRE(snapshot(f) == before);
    REQUIRE(f.batches() == 2);
    ended_batch();
    CHECK(f.select(0.5).kept == 2);
    // N unknown: any count is right.
    fisher_accumulator<float> counted;
    counted.add_tensor("layer.a", 4);
    counted.accumulate("layer.a", g);
    counted.end_batch();
    CHECK(counted.select(0.5).kept == 2);
}

TEST_CASE("fisher accumulator: per-tensor ratios and cuts (keep_ratio, selection_scope)", "[mask][fisher]") {
    childtune::fisher_accumulator<float> f;
    f.add_tensor("layer.0", 10);
    f.add_tensor("layer.1", 6);
    std::vector<float> g0(10), g1(6);
    for (std::size_t i = 0; i < 10; ++i) g0[i] = static_cast<float>((i * 7) % 10) + 1.0f; // distinct
    for (std::size_t i = 0; i < 6; ++i) g1[i] = 0.1f * static_cast<float>(i + 1);       // all below layer.0's
    f.accumulate("layer.0", g0);
    f.accumulate("layer.1", g1);
    f.end_batch();
    // A global cut at 0.5 keeps the 8 largest: all of them in layer.0.
    const auto global = f.select(childtune::keep_ratio(0.5), childtune::selection_scope::global,
                                 childtune::selection_rule::exact_count);
    REQUIRE(global.find("layer.0")->count() == 8);
    REQUIRE(global.find("layer.1")->count() == 0);
    REQUIRE(global == f.select(0.5, childtune::selection_rule::exact_count).masks);
    // Per tensor, with a ratio per layer: 0.3 of layer.0 (its 3 largest), 0.5 of layer.1 (its 3 largest).
    const auto ratio = childtune::keep_ratio::by_tensor(
        [](const childtune::tensor_info& t, std::size_t index) { return t.name == "layer.0" && index == 0 ? 0.3 : 0.5; });
    const auto per = f.select(ratio, childtune::selection_scope::per_tensor, childtune::selection_rule::exact_count);
    const auto& m0 = *per.find("layer.0");
    const auto& m1 = *per.find("layer.1");
    REQUIRE(m0.count() == 3);
    for (std::size_t i = 0; i < 10; ++i) REQUIRE(m0.test(i) == (g0[i] >= 8.0f));
    REQUIRE(m1.count() == 3);
    for (std::size_t i = 0; i < 6; ++i) REQUIRE(m1.test(i) == (i >= 3));
    REQUIRE_THROWS_WITH(f.select(ratio, childtune::selection_scope::global), Catch::Contains("needs selection_scope::per_tensor"));
    REQUIRE_THROWS_WITH(f.select(childtune::keep_ratio(0.0), childtune::selection_scope::per_tensor),
                        Catch::Contains("fisher_accumulator: p = 0 is outside (0, 1]"));
}
