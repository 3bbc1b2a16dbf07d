#include <childtune/exec/cpu_step.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstring>
#include <random>
#include <vector>

using namespace childtune;

TEMPLATE_TEST_CASE("the compact-state kernel equals the full-state kernel on every ISA", "[exec][compact]", float, double) {
    using S = TestType;
    const std::size_t n = 1000;
    std::mt19937 rng(3);
    std::normal_distribution<S> normal;
    bit_mask mask(n);
    for (std::size_t i = 0; i < n; ++i) mask.set(i, rng() % 10 < 3);
    std::vector<std::uint32_t> kept_before{0};
    for (auto w : mask.words()) kept_before.push_back(kept_before.back() + static_cast<std::uint32_t>(std::popcount(w)));
    const std::size_t kept = kept_before.back();

    for (auto isa : {detail::cpu_isa::scalar, detail::cpu_isa::sse2, detail::cpu_isa::avx2, detail::cpu_isa::avx512}) {
        if (!detail::cpu_supports(isa)) continue;
        for (auto flavour : {adamw_flavour::torch, adamw_flavour::legacy}) {
            CAPTURE(static_cast<int>(isa), static_cast<int>(flavour));
            const adamw::options o{.lr = 1e-2, .weight_decay = 0.1, .flavour = flavour};
            std::vector<S> p(n), g(n), m(n, S(0)), v(n, S(0)), cm(kept, S(0)), cv(kept, S(0));
            for (auto& x : p) x = normal(rng);
            auto cp = p;
            for (int step = 1; step <= 4; ++step) {
                for (auto& x : g) x = S(0.1) * normal(rng);
                const auto c = adamw::prepare<S>(o, static_cast<std::uint64_t>(step), step == 1);
                detail::cpu_step_range<adamw, S, S>(c, {}, fixed_view(mask), {p.data(), g.data(), {m.data(), v.data()}}, 2, 0,
                                                    n, isa);
                // Two ranges, split at a word boundary, as the optimizer's work items do.
                const detail::step_operands<S, S> x{cp.data(), g.data(), {cm.data(), cv.data()}};
                detail::cpu_compact_step_range<adamw, S, S>(c, {}, mask.words().data(), kept_before.data(), x, 0, 512, isa);
                detail::cpu_compact_step_range<adamw, S, S>(c, {}, mask.words().data(), kept_before.data(), x, 512, n, isa);
            }
            REQUIRE(std::memcmp(p.data(), cp.data(), n * sizeof(S)) == 0);
            std::size_t k = 0;
            for (std::size_t i = 0; i < n; ++i) {
                if (mask.test(i)) {
                    REQUIRE(std::memcmp(&m[i], &cm[k], sizeof(S)) == 0);
                    REQUIRE(std::memcmp(&v[i], &cv[k], sizeof(S)) == 0);
                    ++k;
                } else {
                    REQUIRE(m[i] == S(0)); // what compact state relies on
                    REQUIRE(v[i] == S(0));
                }
            }
        }
    }
}
