// The Thrust adapter's batched step on a CPU Thrust system (this file is compiled
// once for the CPP system and once for the OMP system): bit for bit the core CPU
// path, for every update rule and mask, over batches of uneven tensors.

#include <childtune/exec/cpu_step.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using namespace childtune;

namespace {

constexpr std::size_t sizes[] = {1, 63, 64, 65, 255, 256, 257, 1000, 4097};

template <class T>
bool same_bits(const std::vector<T>& a, const ::thrust::device_vector<T>& b) {
    std::vector<T> copy(b.size());
    ::thrust::copy(b.begin(), b.end(), copy.begin());
    return a.size() == copy.size() && std::memcmp(a.data(), copy.data(), a.size() * sizeof(T)) == 0;
}

// One tensor held twice: on the host for the core CPU path, in the Thrust
// system's memory for the adapter.
template <class P, class S>
struct twin {
    std::string name;
    std::vector<P> p, g;
    std::vector<S> s0, s1;
    ::thrust::device_vector<P> dp, dg;
    ::thrust::device_vector<S> ds0, ds1;

    twin(std::string n, std::size_t size, std::mt19937& rng) : name(std::move(n)), p(size), g(size), s0(size), s1(size) {
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (std::size_t i = 0; i < size; ++i) {
            p[i] = P(normal(rng));
            g[i] = P(0.1f * normal(rng));
        }
        dp = p;
        dg = g;
        ds0 = s0;
        ds1 = s1;
    }
    void new_gradient(std::mt19937& rng) {
        std::normal_distribution<float> normal(0.0f, 0.1f);
        for (auto& x : g) x = P(normal(rng));
        dg = g;
    }
};

template <class Mask>
auto view_of(const Mask& m, std::uint32_t key, std::uint64_t step, std::size_t size) {
    if constexpr (std::is_same_v<Mask, dense>) return m.view();
    else if constexpr (std::is_same_v<Mask, bernoulli>) return m.view(key, step);
    else return m.view(std::to_string(key), size);
}

template <class Rule, class P, class S, class Mask, class Policy>
void check_batch(const Policy& policy, const typename Rule::options& options, const Mask& mask, masking_options mo) {
    using view_type = decltype(view_of(mask, 0, 0, 0));
    std::mt19937 rng(11);
    std::vector<twin<P, S>> tensors;
    for (std::size_t k = 0; k < std::size(sizes); ++k) tensors.emplace_back(std::to_string(k), sizes[k], rng);
    const std::size_t buffers = Rule::state_buffers(options);

    for (std::uint64_t step = 1; step <= 3; ++step) {
        std::vector<::childtune::thrust::tensor_step<P, S, view_type>> batch;
        for (std::size_t k = 0; k < tensors.size(); ++k) {
            auto& t = tensors[k];
            const auto view = view_of(mask, static_cast<std::uint32_t>(k), step - 1, t.p.size());
            // The core CPU path, on the host copy.
            const auto c = Rule::template prepare<S>(options, step, step == 1);
            detail::cpu_step_range<Rule, S, P>(c, mo, view, {t.p.data(), t.g.data(), {t.s0.data(), t.s1.data()}},
                                               buffers, 0, t.p.size());
            batch.push_back({t.name,
                             ::thrust::raw_pointer_cast(t.dp.data()),
                             ::thrust::raw_pointer_cast(t.dg.data()),
                             {::thrust::raw_pointer_cast(t.ds0.data()), ::thrust::raw_pointer_cast(t.ds1.data())},
                             t.p.size(),
                             view,
                             step,
                             step == 1});
        }
        ::childtune::thrust::step<Rule>(policy, options, mo, batch);
        for (auto& t : tensors) {
            CAPTURE(t.name, t.p.size(), step);
            REQUIRE(same_bits(t.p, t.dp));
            if (buffers > 0) REQUIRE(same_bits(t.s0, t.ds0));
            if (buffers > 1) REQUIRE(same_bits(t.s1, t.ds1));
            t.new_gradient(rng);
        }
    }
}

template <class Rule, class P, class S>
void check_all_masks(const typename Rule::options& options) {
    fixed f;
    for (std::size_t k = 0; k < std::size(sizes); ++k) {
        bit_mask bits(sizes[k]);
        for (std::size_t i = k % 3; i < sizes[k]; i += 3) bits.set(i);
        f.masks.add(std::to_string(k), std::move(bits));
    }
    for (auto mo : {masking_options{mask_target::gradient, true}, masking_options{mask_target::update, false}}) {
        CAPTURE(static_cast<int>(mo.target), mo.decay_masked);
        check_batch<Rule, P, S>(::thrust::device, options, dense{}, mo);
        check_batch<Rule, P, S>(::thrust::device, options, bernoulli{0.3, 7}, mo);
        check_batch<Rule, P, S>(::thrust::device, options, f, mo);
    }
}

} // namespace

TEMPLATE_TEST_CASE("thrust step equals the core CPU step bit for bit", "[thrust]", (std::tuple<float, float>),
                   (std::tuple<bfloat16, float>), (std::tuple<double, double>)) {
    using P = std::tuple_element_t<0, TestType>;
    using S = std::tuple_element_t<1, TestType>;
    SECTION("adamw, torch flavour") {
        check_all_masks<adamw, P, S>({.lr = 1e-2, .weight_decay = 0.1, .flavour = adamw_flavour::torch});
    }
    SECTION("adamw, legacy flavour") {
        check_all_masks<adamw, P, S>({.lr = 1e-2, .weight_decay = 0.1, .flavour = adamw_flavour::legacy});
    }
    SECTION("adam") { check_all_masks<adam, P, S>({.lr = 1e-2, .weight_decay = 0.1}); }
    SECTION("sgd with momentum, nesterov") {
        check_all_masks<sgd, P, S>({.lr = 1e-2, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    }
    SECTION("sgd without state") { check_all_masks<sgd, P, S>({.lr = 1e-2}); }
}

TEST_CASE("thrust step rejects bad batches before writing anything", "[thrust]") {
    std::vector<float> p(10, 1.0f), g(10, 1.0f), m(10), v(10);
    ::thrust::device_vector<float> dp = p, dg = g, dm = m, dv = v;
    using step_t = ::childtune::thrust::tensor_step<float, float, dense_view>;
    const adamw::options o{.lr = 1e-2};
    step_t good{"good", ::thrust::raw_pointer_cast(dp.data()), ::thrust::raw_pointer_cast(dg.data()),
                {::thrust::raw_pointer_cast(dm.data()), ::thrust::raw_pointer_cast(dv.data())}, 10, {}, 1, true};
    auto unchanged = [&] { return same_bits(p, dp) && same_bits(m, dm) && same_bits(v, dv); };

    step_t no_state = good;
    no_state.name = "layer.weight";
    no_state.state[1] = nullptr;
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{good, no_state}),
                        Catch::Contains("'layer.weight'") && Catch::Contains("state buffer 1 is null"));
    REQUIRE(unchanged());

    step_t no_grad = good;
    no_grad.grad = nullptr;
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{good, no_grad}),
                        Catch::Contains("null parameter or gradient pointer"));
    step_t step_zero = good;
    step_zero.step = 0;
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{step_zero}),
                        Catch::Contains("step counts start at 1"));
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, adamw::options{.lr = -1.0}, {},
                                                        std::vector<step_t>{good}),
                        Catch::Contains("lr"));
    REQUIRE(unchanged());

    // An empty batch and empty tensors are no-ops.
    ::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{});
    step_t empty = good;
    empty.size = 0;
    empty.param = nullptr;
    ::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{empty});
    REQUIRE(unchanged());
}
