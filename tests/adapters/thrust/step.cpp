// The Thrust adapter's batched step on a CPU Thrust system (this file is compiled
// once for the CPP system and once for the OMP system): bit for bit the core CPU
// path, for every update rule and mask, over batches of uneven tensors.

#include "adapters/thrust/host_copy.hpp"

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

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

// Using-declarations, not `using namespace childtune`: in a CUDA translation unit
// nvcc's generated stubs name ::thrust unqualified, which childtune::thrust would
// make ambiguous.
using childtune::adam;
using childtune::adamw;
using childtune::adamw_flavour;
using childtune::bernoulli;
using childtune::bfloat16;
using childtune::bit_mask;
using childtune::dense;
using childtune::dense_view;
using childtune::fixed;
using childtune::mask_target;
using childtune::masking_options;
using childtune::sgd;

namespace {

constexpr std::size_t tensor_sizes[] = {1, 63, 64, 65, 255, 256, 257, 1000, 4097};

using childtune_thrust_test::same_bits;

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

// The same keep decisions in the system's memory: fixed masks are uploaded
// (a CUDA kernel cannot read the host's bit_mask), the others are keyed views.
template <class Mask>
auto system_view_of(const Mask& m, const ::childtune::thrust::device_mask_set& uploaded, std::uint32_t key,
                    std::uint64_t step, std::size_t size) {
    if constexpr (std::is_same_v<Mask, fixed>) return uploaded.view(std::to_string(key), size);
    else return view_of(m, key, step, size);
}

template <class Rule, class P, class S, class Mask, class Policy>
void check_batch(const Policy& policy, const typename Rule::options& options, const Mask& mask, masking_options mo) {
    using view_type = decltype(view_of(mask, 0, 0, 0));
    ::childtune::thrust::device_mask_set uploaded;
    if constexpr (std::is_same_v<Mask, fixed>) uploaded = ::childtune::thrust::device_mask_set::upload(policy, mask.masks);
    std::mt19937 rng(11);
    std::vector<twin<P, S>> tensors;
    for (std::size_t k = 0; k < std::size(tensor_sizes); ++k) tensors.emplace_back(std::to_string(k), tensor_sizes[k], rng);
    const std::size_t buffers = Rule::state_buffers(options);

    for (std::uint64_t step = 1; step <= 3; ++step) {
        std::vector<::childtune::thrust::tensor_step<P, S, view_type>> batch;
        for (std::size_t k = 0; k < tensors.size(); ++k) {
            auto& t = tensors[k];
            const auto view = view_of(mask, static_cast<std::uint32_t>(k), step - 1, t.p.size());
            // The core CPU path, on the host copy.
            const auto c = Rule::template prepare<S>(options, step, step == 1);
            childtune::detail::cpu_step_range<Rule, S, P>(c, mo, view, {t.p.data(), t.g.data(), {t.s0.data(), t.s1.data()}},
                                               buffers, 0, t.p.size());
            batch.push_back({t.name,
                             ::thrust::raw_pointer_cast(t.dp.data()),
                             ::thrust::raw_pointer_cast(t.dg.data()),
                             {::thrust::raw_pointer_cast(t.ds0.data()), ::thrust::raw_pointer_cast(t.ds1.data())},
                             t.p.size(),
                             system_view_of(mask, uploaded, static_cast<std::uint32_t>(k), step - 1, t.p.size()),
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
    for (std::size_t k = 0; k < std::size(tensor_sizes); ++k) {
        bit_mask bits(tensor_sizes[k]);
        for (std::size_t i = k % 3; i < tensor_sizes[k]; i += 3) bits.set(i);
        f.masks.add(std::to_string(k), std::move(bits));
    }
    for (auto mo : {masking_options{mask_target::gradient, true}, masking_options{mask_target::update, false}}) {
        CAPTURE(static_cast<int>(mo.target), mo.decay_masked);
        check_batch<Rule, P, S>(::thrust::device, options, dense{}, mo);
        check_batch<Rule, P, S>(::thrust::device, options, bernoulli{0.3, 7}, mo); // definition 4: consecutive octets
        check_batch<Rule, P, S>(::thrust::device, options, bernoulli{0.3, 7, 3}, mo); // octets 16 apart
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

    // A fixed mask shorter than its tensor would be read past its end.
    const std::vector<std::uint64_t> words(1, ~std::uint64_t{0});
    const ::thrust::device_vector<std::uint64_t> dwords(words.begin(), words.end());
    using fixed_step = ::childtune::thrust::tensor_step<float, float, childtune::fixed_view>;
    fixed_step short_mask{"layer.mask", good.param, good.grad, {good.state[0], good.state[1]}, 10,
                          childtune::fixed_view(::thrust::raw_pointer_cast(dwords.data()), 8, 0), 1, true};
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<fixed_step>{short_mask}),
                        Catch::Contains("'layer.mask'") && Catch::Contains("fixed mask has 8 elements, the view needs 10"));
    REQUIRE(unchanged());

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    // Host memory handed over as device memory is caught before the kernel runs.
    step_t host_param = good;
    host_param.name = "host.weight";
    host_param.param = p.data();
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{good, host_param}),
                        Catch::Contains("'host.weight'") && Catch::Contains("the parameter is host memory"));
    step_t host_state = good;
    host_state.state[1] = v.data();
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{host_state}),
                        Catch::Contains("a state buffer is host memory"));
    REQUIRE(unchanged());
#endif

    // An empty batch and empty tensors are no-ops.
    ::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{});
    step_t empty = good;
    empty.size = 0;
    empty.param = nullptr;
    ::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{empty});
    REQUIRE(unchanged());
}

TEST_CASE("make_tensor_step describes device_vectors and rejects mismatched sizes", "[thrust]") {
    ::thrust::device_vector<float> p(100, 1.0f), g(100, 0.5f), m(100, 0.0f), v(100, 0.0f), short_v(99, 0.0f);
    const auto t = ::childtune::thrust::make_tensor_step("w", p, g, m, v, dense_view{}, 1, true);
    REQUIRE(t.size == 100);
    REQUIRE(t.param == ::thrust::raw_pointer_cast(p.data()));
    REQUIRE(t.state[1] == ::thrust::raw_pointer_cast(v.data()));
    ::childtune::thrust::step<adamw>(::thrust::device, adamw::options{.lr = 0.1}, {}, std::vector{t});
    REQUIRE(static_cast<float>(p[0]) < 1.0f);

    REQUIRE_THROWS_WITH(::childtune::thrust::make_tensor_step("w", p, g, m, short_v, dense_view{}, 1, true),
                        Catch::Contains("'w': state buffer 1 has 99 elements, the parameter has 100"));
    REQUIRE_THROWS_WITH(::childtune::thrust::make_tensor_step("w", p, short_v, dense_view{}, 1, true),
                        Catch::Contains("'w': the gradient has 99 elements"));

    // No state: plain SGD.
    const auto s = ::childtune::thrust::make_tensor_step("b", p, g, dense_view{}, 1, true);
    static_assert(std::is_same_v<std::remove_const_t<decltype(s)>, ::childtune::thrust::tensor_step<float, float, dense_view>>);
    const float before = p[0];
    ::childtune::thrust::step<sgd>(::thrust::device, sgd::options{.lr = 0.1}, {}, std::vector{s});
    REQUIRE(static_cast<float>(p[0]) == before - 0.1f * 0.5f);
}

TEST_CASE("bad input: aliasing buffers and sizes near the index limits are refused before anything runs",
          "[thrust][bad_input]") {
    std::vector<float> p(64, 1.0f), m(64), v(64);
    ::thrust::device_vector<float> dp = p, dm = m, dv = v;
    using step_t = ::childtune::thrust::tensor_step<float, float, dense_view>;
    const adamw::options o{.lr = 1e-2};
    float* base = ::thrust::raw_pointer_cast(dp.data());
    float* s0 = ::thrust::raw_pointer_cast(dm.data());
    float* s1 = ::thrust::raw_pointer_cast(dv.data());
    auto unchanged = [&] { return same_bits(p, dp) && same_bits(m, dm) && same_bits(v, dv); };
    const auto off = ::childtune::thrust::memory_check::off;

    // The gradient inside its own parameter (same start, or shifted by one element).
    for (const std::size_t shift : {std::size_t{0}, std::size_t{1}, std::size_t{31}}) {
        const step_t alias{"alias", base, base + shift, {s0, s1}, 32, {}, 1, true};
        REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{alias}),
                            Catch::Contains("'alias'") && Catch::Contains("parameter and gradient memory overlap"));
    }
    REQUIRE(unchanged());

    // Made-up sizes (the pointers are never dereferenced: the batch is refused first).
    constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t limit = childtune::detail::max_tensor_elements<float>;
    for (const std::uint64_t n : {limit + 1, max - 254, max}) {
        const step_t huge{"huge", base, base + 32, {s0, s1}, n, {}, 1, true};
        REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{huge}, off),
                            Catch::Contains("'huge'") && Catch::Contains("exceed the address space"));
    }
    // Sizes each within the limit whose 256-aligned index space wraps 64 bits: a
    // wrapped extent used to skip tensors silently. Fake, disjoint addresses.
    std::vector<step_t> wide;
    for (std::uint64_t i = 0; i < 8; ++i)
        wide.push_back({"wide", reinterpret_cast<float*>(std::uintptr_t{4}),
                        reinterpret_cast<const float*>(std::uintptr_t{1} << 63), {s0, s1}, limit, {}, 1, true});
    wide[7].name = "wide.7";
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, wide, off),
                        Catch::Contains("'wide.7'") && Catch::Contains("index space") && Catch::Contains("overflows 64 bits"));

    // A fixed mask offset whose offset + size wraps.
    const ::thrust::device_vector<std::uint64_t> dwords(1, ~std::uint64_t{0});
    using fixed_step = ::childtune::thrust::tensor_step<float, float, childtune::fixed_view>;
    const fixed_step wrap{"wrap", base, base + 32, {s0, s1}, 32,
                          childtune::fixed_view(::thrust::raw_pointer_cast(dwords.data()), 64, max - 8), 1, true};
    REQUIRE_THROWS_WITH(::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<fixed_step>{wrap}),
                        Catch::Contains("'wrap'") && Catch::Contains("fixed mask has 64 elements, the view needs " +
                                                                     std::to_string(max - 8) + " + 32"));
    REQUIRE(unchanged());

    // Adjacent halves of one buffer are fine.
    const step_t adjacent{"adjacent", base, base + 32, {s0, s1}, 32, {}, 1, true};
    ::childtune::thrust::step<adamw>(::thrust::device, o, {}, std::vector<step_t>{adjacent});
    REQUIRE(static_cast<float>(dp[0]) != 1.0f);
}
