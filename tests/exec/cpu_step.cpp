#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include "support/cpu_isas.hpp"
#include "support/phase_sums.hpp"

#include <cstring>
#include <random>
#include <tuple>
#include <vector>

using namespace childtune;
using test_support::finish_phase;
using test_support::same_bits;

namespace {
// The state of one tensor: buffer b, element i at s[b][i].
template <class S>
using tensor_state = std::vector<std::vector<S>>;

// The scalar definition: what a CUDA/Thrust kernel runs, one element at a time.
// Rules with a per-tensor phase (LAMB) first run `reduce` over every element,
// summing each 64-element block's terms in element order in double (the
// kernels' block sums, exec/tensor_sum.hpp), then `finish` on the tensor's sums.
// Returns the block sums (empty without a phase).
template <class Rule, class S, class P, class MaskView>
std::vector<double> scalar_step(typename Rule::template step_constants<S> c, masking_options mo, const MaskView& mask,
                                std::vector<P>& p, const std::vector<P>& g, tensor_state<S>& s, std::size_t buffers) {
    constexpr std::size_t slots = detail::rule_state_slots<Rule>();
    constexpr std::size_t reductions = detail::rule_reduction_count<Rule>();
    const S keep_p = static_cast<S>(mask.keep_probability());
    auto element = [&](std::size_t i) {
        return detail::make_element_mask<bool, S>(mask.keep(i), true, false, mo, keep_p, keep_p != S(1));
    };
    auto load = [&](std::size_t i, S (&st)[slots]) {
        for (std::size_t b = 0; b < slots; ++b) st[b] = b < buffers ? s[b][i] : S(0);
    };
    auto keep_state = [&](std::size_t i, const S (&st)[slots]) {
        for (std::size_t b = 0; b < buffers; ++b) s[b][i] = st[b];
    };
    std::vector<double> blocks;
    if constexpr (reductions > 0) {
        blocks.assign((p.size() + 63) / 64 * reductions, 0.0);
        for (std::size_t i = 0; i < p.size(); ++i) {
            S st[slots];
            S terms[reductions];
            load(i, st);
            Rule::reduce(c, element(i), detail::widen<S>(p[i]), detail::widen<S>(g[i]), st, terms);
            keep_state(i, st);
            for (std::size_t r = 0; r < reductions; ++r) blocks[i / 64 * reductions + r] += static_cast<double>(terms[r]);
        }
        finish_phase<Rule>(c, blocks);
    }
    for (std::size_t i = 0; i < p.size(); ++i) {
        S x = detail::widen<S>(p[i]);
        S st[slots];
        load(i, st);
        Rule::apply(c, element(i), x, detail::widen<S>(g[i]), st);
        p[i] = detail::narrow<P>(x);
        keep_state(i, st);
    }
    return blocks;
}

// The same step through the kernels on one instruction set, the tensor split
// into two ranges at `split` (as the optimizer's work items split it), with the
// keep decisions from `source`. Returns the reduce pass's block sums; both
// sides finish the phase with finish_phase, so they apply the same trust ratio
// only when the block sums agree (checked by the caller).
template <class Rule, class S, class P, class MaskView>
std::vector<double> vector_step(typename Rule::template step_constants<S> c, masking_options mo, const MaskView& mask,
                                std::vector<P>& p, const std::vector<P>& g, tensor_state<S>& s, std::size_t buffers,
                                detail::cpu_isa isa, detail::keep_source source, std::size_t split) {
    constexpr std::size_t reductions = detail::rule_reduction_count<Rule>();
    detail::step_operands<P, S> x{p.data(), g.data(), {}};
    for (std::size_t b = 0; b < s.size(); ++b) x.state[b] = s[b].data();
    const std::size_t n = p.size();
    std::vector<double> blocks;
    if constexpr (reductions > 0) {
        blocks.assign((n + 63) / 64 * reductions, 0.0);
        detail::cpu_reduce_range<Rule, S, P>(c, mo, mask, x, buffers, 0, split, blocks.data(), isa, source);
        detail::cpu_reduce_range<Rule, S, P>(c, mo, mask, x, buffers, split, n, blocks.data() + split / 64 * reductions,
                                             isa, source);
        finish_phase<Rule>(c, blocks);
    }
    detail::cpu_step_range<Rule, S, P>(c, mo, mask, x, buffers, 0, split, isa, source);
    detail::cpu_step_range<Rule, S, P>(c, mo, mask, x, buffers, split, n, isa, source);
    return blocks;
}

template <class Rule, class S, class P, class MaskView>
void check_vector_equals_scalar(const typename Rule::options& o, const MaskView& mask, masking_options mo,
                                detail::keep_source source) {
  for (const auto isa : test_support::supported_cpu_isas()) {
    CAPTURE(static_cast<int>(isa));
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t buffers = Rule::state_buffers(o);
    // 9000 (drawn keep words only): several chunks of the keep words a pass draws
    // at a time (definition 3: 4096 elements), the last one ragged.
    for (std::size_t n : {1u, 3u, 4u, 15u, 17u, 63u, 64u, 65u, 127u, 200u, 1000u, 9000u}) {
        if (n > 1000 && source != detail::keep_source::drawn_in_pass) continue;
        std::vector<P> p(n), g(n);
        tensor_state<S> s(Rule::max_state_buffers, std::vector<S>(n));
        for (std::size_t i = 0; i < n; ++i) {
            p[i] = i % 7 == 3 ? P(-0.0f) : P(normal(rng)); // signed zeros must survive
            g[i] = P(0.1f * normal(rng));
            for (std::size_t b = 0; b < s.size(); ++b) // a first moment, then non-negative ones
                s[b][i] = b == 0 ? S(0.01f * normal(rng)) : S(0.001f * std::abs(normal(rng)));
        }
        auto p2 = p;
        auto s2 = s;
        // Split at a multiple of 64, as the optimizer's work items do; the
        // drawn keep words need ranges that start a 128-element group
        // (definition 3: a 256-element super-group).
        const std::size_t cut = source == detail::keep_source::drawn_in_pass ? 256 : 64;
        const std::size_t split = n > cut ? cut : n;
        for (int step = 1; step <= 3; ++step) {
            const auto c = Rule::template prepare<S>(o, static_cast<std::uint64_t>(step), step == 1);
            const auto sums = vector_step<Rule, S, P>(c, mo, mask, p, g, s, buffers, isa, source, split);
            const auto sums2 = scalar_step<Rule, S, P>(c, mo, mask, p2, g, s2, buffers);
            REQUIRE(same_bits(sums, sums2));
        }
        INFO("n = " << n);
        std::size_t q = 0; // the first element that differs (one check, not n: n reaches 9000)
        while (q < n && std::memcmp(&p[q], &p2[q], sizeof(P)) == 0) ++q;
        if (q < n) {
            INFO("element " << q << ": vector " << detail::widen<double>(p[q]) << ", scalar " << detail::widen<double>(p2[q]));
            REQUIRE(q == n);
        }
        for (std::size_t b = 0; b < s.size(); ++b) REQUIRE(same_bits(s[b], s2[b]));
    }
  }
}

template <class Rule, class S, class P>
void check_all_masks(const typename Rule::options& o) {
    INFO("rule " << Rule::name);
    using detail::keep_source;
    bit_mask fixed_bits(1000); // as long as the longest tensor it is checked on
    for (std::size_t i = 0; i < 1000; i += 3) fixed_bits.set(i);
    for (auto mo : {masking_options{mask_target::gradient, true}, masking_options{mask_target::update, false}}) {
        CAPTURE(static_cast<int>(mo.target));
        check_vector_equals_scalar<Rule, S, P>(o, dense_view{}, mo, keep_source::words);
        check_vector_equals_scalar<Rule, S, P>(o, fixed_view(fixed_bits), mo, keep_source::words);
        // Child-Tuning_F by every definition, with the keep words fetched and
        // drawn inside the pass (exec/kernel.hpp), as optimizers draw them.
        for (const std::uint32_t version : {1u, 2u, 3u, 4u})
            for (const auto source : {keep_source::words, keep_source::drawn_in_pass}) {
                CAPTURE(version, static_cast<int>(source));
                check_vector_equals_scalar<Rule, S, P>(o, bernoulli{0.3, 8, version}.view(4, 2), mo, source);
            }
    }
}

template <class S, class P>
void check_all_rules() {
    // lr = 0 makes the step-size constants -0: broadcasting them must keep the sign.
    check_all_masks<adamw, S, P>({.lr = 0.0, .weight_decay = 0.1, .flavour = adamw_flavour::legacy});
    check_all_masks<sgd, S, P>({.lr = 0.0, .momentum = 0.5});
    check_all_masks<adamw, S, P>({.lr = 1e-2, .weight_decay = 0.1, .flavour = adamw_flavour::torch});
    check_all_masks<adamw, S, P>({.lr = 1e-2, .weight_decay = 0.1, .flavour = adamw_flavour::legacy});
    check_all_masks<adam, S, P>({.lr = 1e-2, .weight_decay = 0.1});
    check_all_masks<sgd, S, P>({.lr = 1e-2, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
    check_all_masks<sgd, S, P>({.lr = 1e-2});
    // One state buffer; a per-tensor phase (reduce pass, block sums, finish).
    check_all_masks<lion, S, P>({.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.1});
    check_all_masks<lamb, S, P>({.lr = 1e-2, .weight_decay = 0.1});
    check_all_masks<lamb, S, P>({.lr = 1e-2, .weight_decay = 0.0, .correct_bias = false, .trust_clip = 0.5});
}
} // namespace

TEMPLATE_TEST_CASE("the vectorised step equals the scalar definition bit for bit", "[exec][cpu]",
                   (std::tuple<float, float>), (std::tuple<float, bfloat16>), (std::tuple<float, float16>),
                   (std::tuple<double, double>), (std::tuple<double, float>), (std::tuple<double, bfloat16>)) {
    using S = std::tuple_element_t<0, TestType>;
    using P = std::tuple_element_t<1, TestType>;
    check_all_rules<S, P>();
}

TEST_CASE("results do not depend on the backend or the thread count", "[exec][cpu][determinism]") {
    // One tensor larger than a work item and a few small ones, 5 steps of CT_F.
    const std::vector<std::size_t> sizes = {300'001, 77, 1, 65'536};
    auto run = [&](const auto& backend) {
        optimizer<adamw> opt(bernoulli{0.2, 3});
        const auto g = opt.add_group("enc", {.lr = 1e-2, .weight_decay = 0.01});
        std::vector<std::vector<float>> params, grads;
        std::mt19937 rng(1);
        std::normal_distribution<float> normal;
        for (auto n : sizes) {
            params.emplace_back(n);
            grads.emplace_back(n);
            for (auto& x : params.back()) x = normal(rng);
        }
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            std::string name = "tensor."; // (GCC 12 warns falsely on "literal" + std::string&&)
            name += std::to_string(i);
            opt.add_parameter(g, name, params[i], grads[i]);
        }
        for (int step = 0; step < 5; ++step) {
            for (auto& gr : grads)
                for (auto& x : gr) x = 0.1f * normal(rng);
            opt.step(backend);
        }
        return params;
    };
    const auto serial = run(serial_backend{});
    for (int threads : {1, 2, 3, 8}) {
        const auto parallel = run(openmp_backend{threads});
        for (std::size_t i = 0; i < sizes.size(); ++i) REQUIRE(same_bits(serial[i], parallel[i]));
    }
}
