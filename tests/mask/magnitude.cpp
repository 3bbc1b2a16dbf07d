// Magnitude masks (SIFT): checked against a naive transcription of the rule
// (sort by |g| descending, index ascending; numpy's percentile), step by step in
// an optimizer, on every executor, and resumed mid-window.

#include "support/every_executor.hpp"

#include <childtune/childtune.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

static_assert(childtune::gradient_reading_policy<childtune::magnitude>);
static_assert(childtune::gradient_reading_policy<childtune::refreshed_fisher>);
static_assert(!childtune::gradient_reading_policy<childtune::bernoulli> && !childtune::gradient_reading_policy<childtune::fixed>);

namespace {

using childtune::bit_mask;

// The top round(p·n) of |x| by sort, ties by index (exact_count, per tensor).
bit_mask naive_exact(const std::vector<float>& x, double p) {
    std::vector<std::size_t> idx(x.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
    const auto keep = static_cast<std::size_t>(std::round(p * static_cast<double>(x.size())));
    bit_mask m(x.size());
    for (std::size_t k = 0; k < keep; ++k) m.set(idx[k]);
    return m;
}

// numpy.percentile(|x|, (1-p)*100) with linear interpolation, keep |x| >= polar.
std::vector<bit_mask> naive_percentile(const std::vector<std::vector<float>>& xs, double p) {
    std::vector<float> all;
    for (const auto& x : xs)
        for (float v : x) all.push_back(std::fabs(v));
    std::sort(all.begin(), all.end());
    const double q = ((1 - p) * 100) / 100, h = static_cast<double>(all.size() - 1) * q;
    const auto lo = static_cast<std::size_t>(std::floor(h));
    const std::size_t hi = std::min(lo + 1, all.size() - 1);
    const double polar = all[lo] + (static_cast<double>(all[hi]) - all[lo]) * (h - static_cast<double>(lo));
    std::vector<bit_mask> out;
    for (const auto& x : xs) {
        bit_mask m(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) m.set(i, std::fabs(x[i]) >= static_cast<float>(polar));
        out.push_back(std::move(m));
    }
    return out;
}

struct shown {
    std::vector<std::string> names;
    std::vector<std::vector<float>> values;
    childtune::gradient_reader reader() const {
        std::vector<childtune::tensor_info> infos;
        std::vector<std::span<const float>> spans;
        for (std::size_t k = 0; k < names.size(); ++k) {
            childtune::tensor_info t;
            t.name = names[k];
            t.group_name = "layers";
            t.size = t.elements = values[k].size();
            infos.push_back(t);
            spans.emplace_back(values[k]);
        }
        return {infos, spans};
    }
};

std::vector<float> grads(std::uint64_t stream, std::size_t n, bool ties) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) {
        const float v = every_executor::value(stream, 0, i);
        g[i] = ties ? std::round(v * 8) / 8 : v; // few distinct magnitudes: many ties
    }
    return g;
}

} // namespace

TEST_CASE("magnitude mask: fresh per-tensor exact count equals the sorted selection, ties by index", "[mask][magnitude]") {
    for (bool ties : {false, true})
        for (double p : {0.1, 0.3, 0.5, 1.0}) {
            INFO("ties " << ties << ", p " << p);
            shown s{{"a", "b"}, {grads(1, 1000, ties), grads(2, 77, ties)}};
            const childtune::magnitude m{.p = p};
            const auto next = m.observe(s.reader(), 0);
            REQUIRE(next.active());
            for (std::size_t k = 0; k < 2; ++k) {
                const bit_mask expect = naive_exact(s.values[k], p);
                REQUIRE(*next.masks().find(s.names[k]) == expect);
                REQUIRE(expect.count() == static_cast<std::size_t>(std::round(p * static_cast<double>(s.values[k].size()))));
            }
            REQUIRE(m.masks().empty()); // observe changed nothing in place
        }
}

TEST_CASE("magnitude mask: global percentile equals numpy's cut over all tensors, ties kept", "[mask][magnitude]") {
    for (bool ties : {false, true}) {
        shown s{{"a", "b"}, {grads(3, 1000, ties), grads(4, 130, ties)}};
        const childtune::magnitude m{.p = 0.3, .scope = childtune::selection_scope::global,
                                     .rule = childtune::selection_rule::percentile};
        const auto next = m.observe(s.reader(), 0);
        const auto expect = naive_percentile(s.values, 0.3);
        for (std::size_t k = 0; k < 2; ++k) REQUIRE(*next.masks().find(s.names[k]) == expect[k]);
    }
}

TEST_CASE("magnitude mask: per-group and per-tensor ratios", "[mask][magnitude]") {
    shown s{{"layer.0.w", "layer.1.w"}, {grads(5, 400, false), grads(6, 300, false)}};
    const auto f = childtune::keep_ratio::by_tensor(
        [](const childtune::tensor_info& t, std::size_t) { return t.name == "layer.0.w" ? 0.1 : 0.5; });
    const auto next = childtune::magnitude{.p = f}.observe(s.reader(), 0);
    REQUIRE(*next.masks().find("layer.0.w") == naive_exact(s.values[0], 0.1));
    REQUIRE(*next.masks().find("layer.1.w") == naive_exact(s.values[1], 0.5));
    // A function ratio cannot make one global cut.
    REQUIRE_THROWS_WITH((childtune::magnitude{.p = f, .scope = childtune::selection_scope::global}.observe(s.reader(), 0)),
                        Catch::Contains("needs selection_scope::per_tensor"));
    // Per group: a group without a ratio is named.
    REQUIRE_THROWS_WITH((childtune::magnitude{.p = childtune::keep_ratio::per_group({{"other", 0.2}})}.observe(s.reader(), 0)),
                        Catch::Contains("group 'layers' of tensor 'layer.0.w' has no keep ratio"));
    const auto g = childtune::magnitude{.p = childtune::keep_ratio::per_group({{"layers", 0.2}})}.observe(s.reader(), 0);
    REQUIRE(*g.masks().find("layer.1.w") == naive_exact(s.values[1], 0.2));
}

TEST_CASE("magnitude mask: a window of W steps sums |g|, then the mask is fixed", "[mask][magnitude]") {
    const std::uint64_t W = 3;
    childtune::magnitude m{.p = 0.25, .window = W};
    std::vector<float> sum(500, 0.0f);
    bit_mask fixed_mask;
    for (std::uint64_t t = 0; t < 6; ++t) {
        INFO("step " << t);
        shown s{{"a"}, {grads(10 + t, 500, false)}};
        m = m.observe(s.reader(), t);
        if (t < W) {
            for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = sum[i] + std::fabs(s.values[0][i]);
        }
        if (t + 1 < W) {
            REQUIRE_FALSE(m.active());
            REQUIRE(m.masks().empty());
        } else if (t + 1 == W) {
            REQUIRE(m.active());
            fixed_mask = naive_exact(sum, 0.25);
            REQUIRE(*m.masks().find("a") == fixed_mask);
        } else {
            REQUIRE(*m.masks().find("a") == fixed_mask);
        }
    }
}

TEST_CASE("magnitude mask: step by step in an optimizer, SGD moves exactly the kept elements", "[mask][magnitude]") {
    std::vector<float> w(300, 0.0f), g(300);
    childtune::optimizer<childtune::sgd> opt(childtune::magnitude{.p = 0.2});
    opt.add_group("layers", {.lr = 1.0});
    opt.add_parameter(0, "w", w, g);
    for (int t = 0; t < 4; ++t) {
        const auto x = grads(20 + static_cast<std::uint64_t>(t), 300, false);
        std::copy(x.begin(), x.end(), g.begin());
        const std::vector<float> before = w;
        REQUIRE(opt.step());
        const bit_mask expect = naive_exact(x, 0.2);
        for (std::size_t i = 0; i < w.size(); ++i) REQUIRE((w[i] != before[i]) == expect.test(i));
        REQUIRE(opt.mask_policy().target<childtune::magnitude>()->observed_steps() == static_cast<std::uint64_t>(t + 1));
    }
}

TEST_CASE("magnitude mask: a rejected step changes nothing", "[mask][magnitude]") {
    std::vector<float> w(64, 0.0f), g(64, 1.0f);
    childtune::optimizer<childtune::sgd> opt(childtune::magnitude{.p = 0.5, .window = 2});
    opt.add_group("layers", {.lr = 1.0});
    opt.add_parameter(0, "w", w, g);
    REQUIRE(opt.step());
    g[3] = NAN;
    REQUIRE_THROWS_WITH(opt.step(), Catch::Contains("NaN or Inf"));
    REQUIRE(opt.mask_policy().target<childtune::magnitude>()->observed_steps() == 1);
}

TEST_CASE("magnitude mask: bad input is an error naming the value", "[mask][magnitude]") {
    REQUIRE_THROWS_WITH(childtune::magnitude{.p = 0.0}.validate(), Catch::Contains("p = 0 is outside (0, 1]"));
    REQUIRE_THROWS_WITH(childtune::magnitude{.p = 1.5}.validate(), Catch::Contains("p = 1.5 is outside (0, 1]"));
    REQUIRE_THROWS_WITH(childtune::magnitude{.p = childtune::keep_ratio::per_group({{"a", -1.0}})}.validate(),
                        Catch::Contains("p of group 'a' = -1"));
    REQUIRE_THROWS_WITH(childtune::magnitude{.p = childtune::keep_ratio::per_group({})}.validate(),
                        Catch::Contains("lists no group"));
    // A function ratio cannot be saved.
    std::vector<float> w(8, 0.0f), g(8, 1.0f);
    childtune::optimizer<childtune::sgd> opt(
        childtune::magnitude{.p = childtune::keep_ratio::by_tensor([](const childtune::tensor_info&, std::size_t) { return 0.5; })});
    opt.add_group("layers", {.lr = 1.0});
    opt.add_parameter(0, "w", w, g);
    REQUIRE(opt.step());
    std::stringstream file;
    REQUIRE_THROWS_WITH(opt.save(file), Catch::Contains("cannot be saved"));
}

TEST_CASE("magnitude mask: fresh and windowed, the same bits on every executor and resumed mid-window", "[mask][magnitude]") {
    every_executor::require_same_bits<childtune::adamw>({.lr = 1e-2, .weight_decay = 0.01},
                                                        every_executor::with_mask(childtune::magnitude{.p = 0.3}));
    every_executor::require_same_bits<childtune::adamw>(
        {.lr = 1e-2}, every_executor::with_mask(childtune::magnitude{.p = 0.3, .scope = childtune::selection_scope::global,
                                                                     .rule = childtune::selection_rule::percentile, .window = 4}),
        6);
}
