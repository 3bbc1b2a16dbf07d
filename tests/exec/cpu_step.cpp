#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <tuple>
#include <vector>

using namespace childtune;

namespace {
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The scalar definition: what a CUDA/Thrust kernel runs, one element at a time.
template <class Rule, class S, class P, class MaskView>
void scalar_step(const typename Rule::template step_constants<S>& c, masking_options mo, const MaskView& mask,
                 std::vector<P>& p, const std::vector<P>& g, std::vector<S>& s0, std::vector<S>& s1, std::size_t buffers) {
    for (std::size_t i = 0; i < p.size(); ++i) {
        const S keep_p = static_cast<S>(mask.keep_probability());
        const auto e = detail::make_element_mask<bool, S>(mask.keep(i), true, false, mo, keep_p, keep_p != S(1));
        S x = detail::widen<S>(p[i]);
        S st[2] = {buffers > 0 ? s0[i] : S(0), buffers > 1 ? s1[i] : S(0)};
        Rule::apply(c, e, x, detail::widen<S>(g[i]), st);
        p[i] = detail::narrow<P>(x);
        if (buffers > 0) s0[i] = st[0];
        if (buffers > 1) s1[i] = st[1];
    }
}

std::vector<detail::cpu_isa> isas() {
    std::vector<detail::cpu_isa> out;
    for (auto isa : {detail::cpu_isa::scalar, detail::cpu_isa::sse2, detail::cpu_isa::avx2, detail::cpu_isa::avx512})
        if (detail::cpu_supports(isa)) out.push_back(isa);
    return out;
}

template <class Rule, class S, class P, class MaskView>
void check_vector_equals_scalar(const typename Rule::options& o, const MaskView& mask, masking_options mo) {
  for (const auto isa : isas()) {
    CAPTURE(static_cast<int>(isa));
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t buffers = Rule::state_buffers(o);
    for (std::size_t n : {1u, 3u, 4u, 15u, 17u, 63u, 64u, 65u, 127u, 200u, 1000u}) {
        std::vector<P> p(n), g(n);
        std::vector<S> s0(n), s1(n);
        for (std::size_t i = 0; i < n; ++i) {
            p[i] = i % 7 == 3 ? P(-0.0f) : P(normal(rng)); // signed zeros must survive
            g[i] = P(0.1f * normal(rng));
            s0[i] = S(0.01f * normal(rng));
            s1[i] = S(0.001f * std::abs(normal(rng)));
        }
        auto p2 = p;
        auto s0b = s0, s1b = s1;
        for (int step = 1; step <= 3; ++step) {
            const auto c = Rule::template prepare<S>(o, static_cast<std::uint64_t>(step), step == 1);
            // Split the range at a multiple of 64, as the optimizer's work items do.
            const std::size_t split = n > 64 ? 64 : n;
            detail::step_operands<P, S> x{p.data(), g.data(), {s0.data(), s1.data()}};
            detail::cpu_step_range<Rule, S, P>(c, mo, mask, x, buffers, 0, split, isa);
            detail::cpu_step_range<Rule, S, P>(c, mo, mask, x, buffers, split, n, isa);
            scalar_step<Rule, S, P>(c, mo, mask, p2, g, s0b, s1b, buffers);
        }
        INFO("n = " << n);
        for (std::size_t q = 0; q < n; ++q) {
            INFO("element " << q << ": vector " << detail::widen<double>(p[q]) << ", scalar " << detail::widen<double>(p2[q]));
            REQUIRE(std::memcmp(&p[q], &p2[q], sizeof(P)) == 0);
        }
        REQUIRE(same_bits(s0, s0b));
        REQUIRE(same_bits(s1, s1b));
    }
  }
}

template <class Rule, class S, class P>
void check_all_masks(const typename Rule::options& o) {
    INFO("rule " << Rule::name);
    bit_mask fixed_bits(1000);
    for (std::size_t i = 0; i < 1000; i += 3) fixed_bits.set(i);
    for (auto mo : {masking_options{mask_target::gradient, true}, masking_options{mask_target::update, false}}) {
        CAPTURE(static_cast<int>(mo.target));
        check_vector_equals_scalar<Rule, S, P>(o, dense_view{}, mo);
        check_vector_equals_scalar<Rule, S, P>(o, bernoulli{0.3, 8}.view(4, 2), mo);
        check_vector_equals_scalar<Rule, S, P>(o, fixed_view(fixed_bits), mo);
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
