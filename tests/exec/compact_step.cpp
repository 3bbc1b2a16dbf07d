#include <childtune/exec/cpu_step.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>

#include <catch2/catch.hpp>

#include "support/cpu_isas.hpp"
#include "support/phase_sums.hpp"

#include <bit>
#include <cstring>
#include <random>
#include <vector>

using namespace childtune;

namespace {
// Steps a tensor with `Rule` under a fixed mask on every instruction set, once
// with full state and once with compact state (split into two ranges at a word
// boundary, as the optimizer's work items split it), and compares the bits.
// Rules with a per-tensor phase (LAMB) run their reduce pass on both layouts
// first; the two sides' block sums must agree bit for bit before each side
// finishes its phase on its own sums.
template <class Rule, class S>
void check_compact_equals_full(const typename Rule::options& o) {
    INFO("rule " << Rule::name);
    constexpr std::size_t buffers = Rule::max_state_buffers;
    constexpr std::size_t reductions = detail::rule_reduction_count<Rule>();
    const std::size_t n = 1000, split = 512, blocks = (n + 63) / 64;
    std::mt19937 rng(3);
    std::normal_distribution<S> normal;
    bit_mask mask(n);
    for (std::size_t i = 0; i < n; ++i) mask.set(i, rng() % 10 < 3);
    std::vector<std::uint32_t> kept_before{0};
    for (auto w : mask.words()) kept_before.push_back(kept_before.back() + static_cast<std::uint32_t>(std::popcount(w)));
    const std::size_t kept = kept_before.back();

    for (auto isa : test_support::supported_cpu_isas()) {
        CAPTURE(static_cast<int>(isa));
        std::vector<S> p(n), g(n);
        for (auto& e : p) e = normal(rng);
        auto cp = p;
        std::vector<std::vector<S>> full(buffers, std::vector<S>(n, S(0))), compact(buffers, std::vector<S>(kept, S(0)));
        detail::step_operands<S, S> x{p.data(), g.data(), {}}, cx{cp.data(), g.data(), {}};
        for (std::size_t b = 0; b < buffers; ++b) {
            x.state[b] = full[b].data();
            cx.state[b] = compact[b].data();
        }
        for (int step = 1; step <= 4; ++step) {
            for (auto& e : g) e = S(0.1) * normal(rng);
            auto c = Rule::template prepare<S>(o, static_cast<std::uint64_t>(step), step == 1);
            auto cc = c;
            if constexpr (reductions > 0) {
                std::vector<double> sums(blocks * reductions), compact_sums(blocks * reductions);
                detail::cpu_reduce_range<Rule, S, S>(c, {}, fixed_view(mask), x, buffers, 0, n, sums.data(), isa);
                detail::cpu_compact_reduce_range<Rule, S, S>(cc, {}, mask.words().data(), kept_before.data(), cx, 0,
                                                             split, compact_sums.data(), isa);
                detail::cpu_compact_reduce_range<Rule, S, S>(cc, {}, mask.words().data(), kept_before.data(), cx,
                                                             split, n, compact_sums.data() + split / 64 * reductions, isa);
                REQUIRE(test_support::same_bits(sums, compact_sums));
                test_support::finish_phase<Rule>(c, sums);
                test_support::finish_phase<Rule>(cc, compact_sums);
            }
            detail::cpu_step_range<Rule, S, S>(c, {}, fixed_view(mask), x, buffers, 0, n, isa);
            detail::cpu_compact_step_range<Rule, S, S>(cc, {}, mask.words().data(), kept_before.data(), cx, 0, split, isa);
            detail::cpu_compact_step_range<Rule, S, S>(cc, {}, mask.words().data(), kept_before.data(), cx, split, n, isa);
        }
        REQUIRE(std::memcmp(p.data(), cp.data(), n * sizeof(S)) == 0);
        for (std::size_t b = 0; b < buffers; ++b) {
            CAPTURE(b);
            std::size_t k = 0;
            for (std::size_t i = 0; i < n; ++i) {
                if (mask.test(i)) {
                    REQUIRE(std::memcmp(&full[b][i], &compact[b][k], sizeof(S)) == 0);
                    ++k;
                } else {
                    REQUIRE(full[b][i] == S(0)); // what compact state relies on
                }
            }
        }
    }
}
} // namespace

TEMPLATE_TEST_CASE("the compact-state kernels equal the full-state kernels on every ISA", "[exec][compact]", float, double) {
    for (auto flavour : {adamw_flavour::torch, adamw_flavour::legacy})
        check_compact_equals_full<adamw, TestType>({.lr = 1e-2, .weight_decay = 0.1, .flavour = flavour});
    // One state buffer: the AVX-512 moves take a buffer count.
    check_compact_equals_full<lion, TestType>({.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.1});
    // A per-tensor phase: the reduce pass reads and writes compact state too.
    check_compact_equals_full<lamb, TestType>({.lr = 1e-2, .weight_decay = 0.1});
    check_compact_equals_full<lamb, TestType>({.lr = 1e-2, .weight_decay = 0.0, .correct_bias = false, .trust_clip = 0.5});
}
