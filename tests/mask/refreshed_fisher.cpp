// Refreshed Fisher masks (DPS): the schedule step by step against a naive
// transcription (scores g², reselection every R steps, warm-up and dense
// phases), resume mid-window bit for bit, every executor, and rank agreement
// at 2 and 3 ranks through the in-process communicator.

#include "support/every_executor.hpp"
#include "support/thread_communicator.hpp"

#include <childtune/childtune.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <tuple>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using childtune::bit_mask;

bit_mask naive_top(const std::vector<float>& s, double p) {
    std::vector<std::size_t> idx(s.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
    const auto keep = static_cast<std::size_t>(std::round(p * static_cast<double>(s.size())));
    bit_mask m(s.size());
    for (std::size_t k = 0; k < keep; ++k) m.set(idx[k]);
    return m;
}

std::vector<float> grads(std::uint64_t stream, std::size_t n) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) g[i] = every_executor::value(stream, 0, i);
    return g;
}

// The DPS schedule, transcribed: which mask step c uses (empty: dense).
struct naive_dps {
    std::uint64_t warmup, period, dense;
    double p;
    std::vector<float> scores;
    bit_mask mask;
    std::optional<bit_mask> step(std::uint64_t c, const std::vector<float>& g) {
        if (scores.empty()) scores.assign(g.size(), 0.0f);
        for (std::size_t i = 0; i < g.size(); ++i) scores[i] = scores[i] + g[i] * g[i];
        if (c < warmup) return std::nullopt;
        const std::uint64_t phase = (c - warmup) % period;
        if (phase == 0) {
            mask = naive_top(scores, p);
            scores.assign(g.size(), 0.0f);
        }
        if (phase < period - dense) return mask;
        return std::nullopt;
    }
};

} // namespace

TEST_CASE("refreshed Fisher mask: warm-up, reselection every R steps and dense phases, step by step", "[mask][refreshed_fisher]") {
    const std::size_t n = 257;
    for (auto [warmup, period, dense] : {std::tuple{0, 1, 0}, std::tuple{2, 3, 0}, std::tuple{1, 4, 2}}) {
        INFO("warmup " << warmup << ", period " << period << ", dense " << dense);
        std::vector<float> w(n, 0.0f), g(n);
        childtune::optimizer<childtune::sgd> opt(childtune::refreshed_fisher{
            .p = 0.2, .warmup = std::uint64_t(warmup), .period = std::uint64_t(period), .dense_steps = std::uint64_t(dense)});
        opt.add_group("layers", {.lr = 1.0});
        opt.add_parameter(0, "w", w, g);
        naive_dps ref{std::uint64_t(warmup), std::uint64_t(period), std::uint64_t(dense), 0.2, {}, {}};
        for (std::uint64_t c = 0; c < 12; ++c) {
            INFO("step " << c);
            const auto x = grads(30 + c, n);
            std::copy(x.begin(), x.end(), g.begin());
            const std::vector<float> before = w;
            REQUIRE(opt.step());
            const auto expect = ref.step(c, x);
            for (std::size_t i = 0; i < n; ++i) REQUIRE((w[i] != before[i]) == (!expect || expect->test(i)));
            const auto* pol = opt.mask_policy().target<childtune::refreshed_fisher>();
            REQUIRE(pol->active() == expect.has_value());
            if (const auto* s = pol->scores("w")) // the window so far
                for (std::size_t i = 0; i < n; ++i) REQUIRE((*s)[i] == ref.scores[i]);
        }
    }
}

TEST_CASE("refreshed Fisher mask: overlap of consecutive masks", "[mask][refreshed_fisher]") {
    std::vector<float> w(200, 0.0f), g(200);
    childtune::optimizer<childtune::sgd> opt(childtune::refreshed_fisher{.p = 0.25, .period = 2});
    opt.add_group("layers", {.lr = 1.0});
    opt.add_parameter(0, "w", w, g);
    bit_mask previous;
    for (std::uint64_t c = 0; c < 6; ++c) {
        const auto x = grads(50 + c, 200);
        std::copy(x.begin(), x.end(), g.begin());
        REQUIRE(opt.step());
        const auto* pol = opt.mask_policy().target<childtune::refreshed_fisher>();
        const bit_mask now = *pol->masks().find("w");
        if (c % 2 == 0 && c > 0) {
            REQUIRE(pol->last_overlap().size() == 1);
            const auto& o = pol->last_overlap()[0];
            std::size_t both = 0;
            for (std::size_t i = 0; i < 200; ++i) both += previous.test(i) && now.test(i);
            REQUIRE(o.kept_both == both);
            REQUIRE(o.kept_now == 50);
            REQUIRE(o.overlap() == Approx(static_cast<double>(both) / 50));
        }
        previous = now;
    }
}

TEST_CASE("refreshed Fisher mask: saved and resumed mid-window, bit for bit", "[mask][refreshed_fisher]") {
    const std::size_t n = 300;
    const childtune::refreshed_fisher policy{.p = 0.3, .scope = childtune::selection_scope::global, .warmup = 1, .period = 4};
    const auto run = [&](int save_at) {
        std::vector<float> w(n, 0.5f), g(n), w2(n), g2(n);
        childtune::optimizer<childtune::adamw> a(policy);
        a.add_group("layers", {.lr = 1e-2});
        a.add_parameter(0, "w", w, g);
        std::vector<std::vector<float>> out;
        for (int t = 0; t < save_at; ++t) {
            const auto x = grads(70 + static_cast<std::uint64_t>(t), n);
            std::copy(x.begin(), x.end(), g.begin());
            REQUIRE(a.step());
            out.push_back(w);
        }
        std::stringstream file;
        a.save(file);
        w2 = w;
        childtune::optimizer<childtune::adamw> b(childtune::refreshed_fisher{});
        b.add_group("layers", {.lr = 1e-2});
        b.add_parameter(0, "w", w2, g2);
        b.load(file);
        REQUIRE(*b.mask_policy().target<childtune::refreshed_fisher>() == *a.mask_policy().target<childtune::refreshed_fisher>());
        for (int t = save_at; t < 10; ++t) {
            const auto x = grads(70 + static_cast<std::uint64_t>(t), n);
            std::copy(x.begin(), x.end(), g2.begin());
            REQUIRE(b.step());
            out.push_back(w2);
        }
        return out;
    };
    const auto straight = run(10);
    for (int save_at : {2, 3, 6}) { // in the warm-up's end, mid-window, mid-window after a refresh
        INFO("resumed after step " << save_at);
        REQUIRE(run(save_at) == straight);
    }
}

TEST_CASE("refreshed Fisher mask: bad input is an error naming the value", "[mask][refreshed_fisher]") {
    REQUIRE_THROWS_WITH(childtune::refreshed_fisher{.period = 0}.validate(), Catch::Contains("period = 0"));
    REQUIRE_THROWS_WITH((childtune::refreshed_fisher{.period = 3, .dense_steps = 3}.validate()),
                        Catch::Contains("dense_steps = 3 is not below period = 3"));
    REQUIRE_THROWS_WITH(childtune::refreshed_fisher{.p = 2.0}.validate(), Catch::Contains("p = 2 is outside (0, 1]"));
    // Compact state is never taken for a mask that changes.
    std::vector<float> w(64, 0.0f), g(64, 1.0f);
    childtune::optimizer<childtune::adamw> opt(childtune::refreshed_fisher{.p = 0.5, .period = 1},
                                               {.compact_fixed_state = true});
    opt.add_group("layers", {.lr = 1e-2});
    opt.add_parameter(0, "w", w, g);
    REQUIRE(opt.step());
    g[0] = 5.0f;
    REQUIRE(opt.step());
    REQUIRE_FALSE(opt.registry().tensors()[0].compact);
}

TEST_CASE("refreshed Fisher mask: the same bits on every executor, resumed mid-window", "[mask][refreshed_fisher]") {
    every_executor::require_same_bits<childtune::adamw>(
        {.lr = 1e-2, .weight_decay = 0.01},
        every_executor::with_mask(childtune::refreshed_fisher{.p = 0.3, .warmup = 1, .period = 3, .dense_steps = 1}), 7);
}

namespace {

// Parameters after 5 steps and the final policy of `policy`: in one process
// (no communicator), or on one rank of a sharded optimizer.
template <class Policy>
std::pair<std::vector<std::vector<float>>, Policy> run_ranks(const Policy& policy, const test_comm::thread_communicator* comm) {
    const std::vector<std::size_t> sizes{130, 77, 1, 500};
    std::vector<std::vector<float>> w, g;
    for (auto s : sizes) {
        w.emplace_back(s, 0.5f);
        g.emplace_back(s);
    }
    const auto fill = [&](std::uint64_t t) {
        for (std::size_t k = 0; k < sizes.size(); ++k) { // into the buffers the optimizer views
            const auto x = grads(90 + t * 10 + k, sizes[k]);
            std::copy(x.begin(), x.end(), g[k].begin());
        }
    };
    if (!comm) {
        childtune::optimizer<childtune::adamw> opt(policy);
        opt.add_group("layers", {.lr = 1e-2});
        for (std::size_t k = 0; k < sizes.size(); ++k) opt.add_parameter(0, "t" + std::to_string(k), w[k], g[k]);
        for (std::uint64_t t = 0; t < 5; ++t) {
            fill(t);
            REQUIRE(opt.step());
        }
        return {w, *opt.mask_policy().template target<Policy>()};
    }
    childtune::sharded_optimizer<childtune::adamw, test_comm::thread_communicator> opt(*comm, policy);
    opt.add_group("layers", {.lr = 1e-2});
    for (std::size_t k = 0; k < sizes.size(); ++k) opt.add_parameter(0, "t" + std::to_string(k), w[k], g[k]);
    for (std::uint64_t t = 0; t < 5; ++t) {
        fill(t);
        opt.step();
    }
    return {w, *opt.mask_policy().template target<Policy>()};
}

template <class Policy>
void require_rank_agreement(const Policy& policy) {
    const auto single = run_ranks(policy, nullptr);
    for (std::size_t world : {2u, 3u}) {
        INFO("world " << world);
        auto comms = test_comm::in_process_group(world);
        std::vector<std::optional<std::pair<std::vector<std::vector<float>>, Policy>>> got(world);
        std::vector<std::thread> ranks;
        for (std::size_t r = 0; r < world; ++r) ranks.emplace_back([&, r] { got[r] = run_ranks(policy, &comms[r]); });
        for (auto& t : ranks) t.join();
        for (std::size_t r = 0; r < world; ++r) {
            INFO("rank " << r);
            REQUIRE(got[r]->first == single.first);
            REQUIRE(got[r]->second == single.second); // masks, scores and counters, bit for bit
        }
    }
}

} // namespace

TEST_CASE("refreshed Fisher mask: identical masks and parameters on 2 and 3 ranks", "[mask][refreshed_fisher][distributed]") {
    require_rank_agreement(childtune::refreshed_fisher{.p = 0.3, .scope = childtune::selection_scope::global, .period = 2});
    require_rank_agreement(childtune::refreshed_fisher{.p = 0.2, .warmup = 1, .period = 3, .dense_steps = 1});
}

TEST_CASE("magnitude mask: identical masks and parameters on 2 and 3 ranks", "[mask][magnitude][distributed]") {
    require_rank_agreement(childtune::magnitude{.p = 0.3});
    require_rank_agreement(childtune::magnitude{.p = 0.2, .scope = childtune::selection_scope::global, .window = 2});
}
