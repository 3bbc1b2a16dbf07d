// The Thrust adapter's Fisher accumulator and top-p selection (compiled for the
// CPP, the OMP and, on GPU machines, the CUDA system): scores, thresholds and
// bit-packed masks equal to the core CPU path's bit for bit, for both selection
// rules, ties, clipping and every gradient type; bad input rejected unchanged.

#include "adapters/thrust/host_copy.hpp"

#include <childtune/mask/fisher.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

// Using-declarations, not `using namespace childtune` (see step.cpp).
using childtune::bfloat16;
using childtune::bit_mask;
using childtune::fisher_accumulator;
using childtune::fisher_options;
using childtune::fixed_view;
using childtune::float16;
using childtune::mask_set;
using childtune::named_scores;
using childtune::select_kth;
using childtune::select_top_p;
using childtune::selection_rule;
namespace ct = ::childtune::thrust;

namespace {

using childtune_thrust_test::same_bits;
using childtune_thrust_test::to_host;

bool same_masks(const mask_set& a, const mask_set& b) {
    if (a.tensor_count() != b.tensor_count()) return false;
    for (std::size_t t = 0; t < a.tensor_count(); ++t) {
        const auto& x = a.entries()[t];
        const auto& y = b.entries()[t];
        if (x.name != y.name || x.mask.size() != y.mask.size()) return false;
        if (!std::equal(x.mask.words().begin(), x.mask.words().end(), y.mask.words().begin())) return false;
    }
    return true;
}

// Tensors that cross the norm's 64 Ki blocks and the masks' 64-bit words.
const std::vector<std::pair<std::string, std::size_t>> fisher_shapes = {
    {"embed", 1}, {"layer.0.w", 1000}, {"layer.0.b", 64}, {"layer.1.w", 65536 + 300}, {"layer.1.b", 131072 + 77}};

template <class G>
std::vector<G> gradient(std::size_t n, std::mt19937& rng, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<G> g(n);
    for (auto& x : g) x = G(normal(rng));
    return g;
}

// Three batches through the CPU accumulator and the device one; scores and
// selections of both compared.
template <class Score, class G>
void check_accumulator(fisher_options options) {
    fisher_accumulator<Score> cpu(options);
    ct::fisher_accumulator<Score> dev(options);
    for (const auto& [name, size] : fisher_shapes) {
        cpu.add_tensor(name, size);
        dev.add_tensor(name, size);
    }
    std::mt19937 rng(3);
    for (int batch = 0; batch < 3; ++batch) {
        for (const auto& [name, size] : fisher_shapes) {
            // Batch 1 has large gradients, so clipping (max_grad_norm 1) cuts in.
            const auto g = gradient<G>(size, rng, batch == 1 ? 0.5f : 1e-3f);
            const ::thrust::device_vector<G> dg(g.begin(), g.end());
            cpu.accumulate(name, g);
            dev.accumulate(::thrust::device, name, ::thrust::raw_pointer_cast(dg.data()), dg.size());
        }
        cpu.end_batch();
        dev.end_batch();
    }
    for (const auto& [name, size] : fisher_shapes) {
        CAPTURE(name);
        REQUIRE(same_bits(cpu.scores(name), dev.scores(::thrust::device, name)));
    }
    for (const auto rule : {selection_rule::percentile, selection_rule::exact_count})
        for (const double p : {1.0, 0.3, 0.05, 1e-3, 1e-9}) {
            CAPTURE(static_cast<int>(rule), p);
            const auto expected = cpu.select(p, rule);
            const auto got = dev.select(::thrust::device, p, rule);
            REQUIRE(got.kept == expected.kept);
            REQUIRE(std::memcmp(&got.threshold, &expected.threshold, sizeof(double)) == 0);
            REQUIRE(same_masks(got.masks.download(::thrust::device), expected.masks));
        }
}

} // namespace

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
// nvcc builds every combination for two architectures: three that cover both score
// types and a 16-bit gradient keep CI's compile time down; the CPU systems run all five.
#define FISHER_TYPES (std::tuple<float, float>), (std::tuple<float, bfloat16>), (std::tuple<double, double>)
#else
#define FISHER_TYPES                                                                                                 \
    (std::tuple<float, float>), (std::tuple<float, bfloat16>), (std::tuple<float, float16>),                         \
        (std::tuple<double, double>), (std::tuple<double, float>)
#endif

TEMPLATE_TEST_CASE("device Fisher scores and masks equal the core's bit for bit", "[thrust][fisher]", FISHER_TYPES) {
    using Score = std::tuple_element_t<0, TestType>;
    using G = std::tuple_element_t<1, TestType>;
    SECTION("N known, no clipping") { check_accumulator<Score, G>({.max_grad_norm = 0, .num_batches = 3}); }
    SECTION("N unknown, clipped per tensor") { check_accumulator<Score, G>({.max_grad_norm = 1.0, .num_batches = 0}); }
    SECTION("N known, clipped per tensor") { check_accumulator<Score, G>({.max_grad_norm = 0.25, .num_batches = 3}); }
}

TEST_CASE("device Fisher norm of double gradients whose squares overflow equals the core's", "[thrust][fisher]") {
    const std::vector<double> g = {1e200, -3e199, 2.0, 0.0, 7e199};
    fisher_accumulator<double> cpu({.max_grad_norm = 1.0});
    ct::fisher_accumulator<double> dev({.max_grad_norm = 1.0});
    cpu.add_tensor("w", g.size());
    dev.add_tensor("w", g.size());
    const ::thrust::device_vector<double> dg(g.begin(), g.end());
    cpu.accumulate("w", g);
    dev.accumulate(::thrust::device, "w", ::thrust::raw_pointer_cast(dg.data()), g.size());
    cpu.end_batch();
    dev.end_batch();
    REQUIRE(same_bits(cpu.scores("w"), dev.scores(::thrust::device, "w")));
    REQUIRE(cpu.scores("w")[0] > 0.0); // clipped, not zeroed by an infinite norm
}

TEST_CASE("device top-p selection equals the core's on ties, zeros and signed zeros", "[thrust][select]") {
    // Few distinct values, so every cut falls inside a run of ties.
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> level(0, 6);
    std::vector<std::vector<float>> host = {std::vector<float>(1), std::vector<float>(777), std::vector<float>(64),
                                            std::vector<float>(5000)};
    for (auto& t : host)
        for (auto& x : t) {
            const int l = level(rng);
            x = l == 0 ? -0.0f : l == 1 ? 0.0f : static_cast<float>(l) * 0.25f;
        }
    std::vector<::thrust::device_vector<float>> dev;
    for (const auto& t : host) dev.emplace_back(t.begin(), t.end());
    const std::vector<std::string> names = {"a", "b", "c", "d"};
    std::vector<named_scores<float>> cpu_in;
    std::vector<ct::device_scores<float>> dev_in;
    for (std::size_t t = 0; t < host.size(); ++t) {
        cpu_in.push_back({names[t], host[t]});
        dev_in.push_back({names[t], ::thrust::raw_pointer_cast(dev[t].data()), dev[t].size()});
    }
    for (const auto rule : {selection_rule::percentile, selection_rule::exact_count})
        for (const double p : {1.0, 0.999, 0.7, 0.5, 0.31, 0.1, 1e-4}) {
            CAPTURE(static_cast<int>(rule), p);
            const auto expected = select_top_p(cpu_in, p, rule);
            const auto got = ct::select_top_p(::thrust::device, dev_in, p, rule);
            REQUIRE(got.kept == expected.kept);
            REQUIRE(got.threshold == expected.threshold);
            REQUIRE(same_masks(got.masks.download(::thrust::device), expected.masks));
        }

    // The order statistic itself, at every rank of a small input.
    std::vector<std::span<const float>> spans(host.begin(), host.end());
    for (std::uint64_t k = 0; k < 5842; k += 97) {
        const auto expected = select_kth(spans, k);
        const auto got = ct::select_kth<float>(::thrust::device, dev_in, k);
        CAPTURE(k);
        REQUIRE(got.value == expected.value);
        REQUIRE(got.less == expected.less);
        REQUIRE(got.equal == expected.equal);
    }
    REQUIRE_THROWS_WITH(ct::select_kth<float>(::thrust::device, dev_in, 5842), Catch::Contains("5842 scores"));
}

TEST_CASE("device selection reports NaN scores and bad arguments as the core does", "[thrust][select]") {
    std::vector<float> host(300, 1.0f);
    host[217] = std::numeric_limits<float>::quiet_NaN();
    const ::thrust::device_vector<float> d(host.begin(), host.end());
    const std::vector<ct::device_scores<float>> in = {{"layer.3.w", ::thrust::raw_pointer_cast(d.data()), d.size()}};
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, in, 0.5),
                        Catch::Contains("score 217 of tensor 'layer.3.w' is NaN"));
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, in, 0.0), Catch::Contains("outside (0, 1]"));
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, in, 1.5), Catch::Contains("outside (0, 1]"));
    const std::vector<ct::device_scores<float>> twice = {in[0], in[0]};
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, twice, 0.5), Catch::Contains("given twice"));
    const std::vector<ct::device_scores<float>> null = {{"w", nullptr, 4}};
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, null, 0.5), Catch::Contains("'w': null score pointer"));
}

TEST_CASE("device Fisher accumulator rejects bad input and keeps its scores", "[thrust][fisher]") {
    ct::fisher_accumulator<float> dev({.num_batches = 2});
    dev.add_tensor("w", 100);
    std::vector<float> g(100, 0.5f);
    ::thrust::device_vector<float> dg(g.begin(), g.end());
    const float* p = ::thrust::raw_pointer_cast(dg.data());
    dev.accumulate(::thrust::device, "w", p, 100);
    dev.end_batch();
    const auto before = dev.scores(::thrust::device, "w");
    // One of the declared 2 batches: selecting now would rank scores divided by 2.
    REQUIRE_THROWS_WITH(dev.select(::thrust::device, 0.5),
                        Catch::Contains("fisher_accumulator: select() after 1 batches, but num_batches = 2 was declared"));

    g[42] = std::numeric_limits<float>::infinity();
    ::thrust::device_vector<float> bad(g.begin(), g.end());
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "w", ::thrust::raw_pointer_cast(bad.data()), 100),
                        Catch::Contains("tensor 'w' is not finite at element 42"));
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "w", p, 99), Catch::Contains("has 99 elements"));
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "v", p, 100), Catch::Contains("unknown tensor 'v'"));
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "w", static_cast<const float*>(nullptr), 100),
                        Catch::Contains("null pointer"));
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "w", g.data(), 100),
                        Catch::Contains("tensor 'w'") && Catch::Contains("the gradient is host memory"));
    const std::vector<ct::device_scores<float>> host_scores = {{"h", g.data(), g.size()}};
    REQUIRE_THROWS_WITH(ct::select_top_p(::thrust::device, host_scores, 0.5), Catch::Contains("the score array is host memory"));
#endif
    REQUIRE_THROWS_WITH(dev.add_tensor("w", 5), Catch::Contains("added twice"));
    REQUIRE_THROWS_WITH(dev.add_tensor("e", 0), Catch::Contains("no element"));
    REQUIRE(same_bits(before, dev.scores(::thrust::device, "w")));

    dev.accumulate(::thrust::device, "w", p, 100);
    REQUIRE_THROWS_WITH(dev.accumulate(::thrust::device, "w", p, 100), Catch::Contains("already accumulated"));
    REQUIRE_THROWS_WITH(dev.select(::thrust::device, 0.5), Catch::Contains("middle of a batch"));
    dev.end_batch();
    REQUIRE_THROWS_WITH(dev.end_batch(), Catch::Contains("after all 2 batches"));
    CHECK(dev.select(::thrust::device, 0.5).kept == 100); // all N batches ended; equal scores all reach the cut
    REQUIRE_THROWS_WITH(ct::fisher_accumulator<float>({.max_grad_norm = -1.0}), Catch::Contains("max_grad_norm"));
    REQUIRE(ct::fisher_accumulator<float>().names().empty());
}

TEST_CASE("device mask sets round-trip host masks and give checked step views", "[thrust][masks]") {
    mask_set host;
    bit_mask a(130), b(1);
    a.set(0);
    a.set(64);
    a.set(129);
    b.set(0);
    host.add("a", a);
    host.add("b", b);
    const auto dev = ct::device_mask_set::upload(::thrust::device, host);
    REQUIRE(dev.tensor_count() == 2);
    REQUIRE(dev.word_count() == 4);
    REQUIRE(same_masks(dev.download(::thrust::device), host));
    const fixed_view view = dev.view("a", 130);
    REQUIRE(view.mask_size() == 130);
    REQUIRE_THROWS_WITH(dev.view("a", 131), Catch::Contains("has 130 elements, the tensor has 131"));
    REQUIRE_THROWS_WITH(dev.view("c", 1), Catch::Contains("no mask for tensor 'c'"));
}

TEST_CASE("bad input: device Fisher and mask sets refuse sizes that would wrap their shared arrays",
          "[thrust][fisher][bad_input]") {
    ct::fisher_accumulator<float> dev({0.0, 0});
    dev.add_tensor("w", 100);
    // offset + size used to wrap and shrink the shared score array.
    for (const std::uint64_t n : {childtune::detail::max_tensor_elements<float> - 99, std::numeric_limits<std::uint64_t>::max() - 50})
        REQUIRE_THROWS_WITH(dev.add_tensor("huge", n), Catch::Contains("tensor 'huge' has " + std::to_string(n) + " elements"));
    REQUIRE(dev.tensor_count() == 1);
    ::thrust::device_vector<float> g(100, 0.5f);
    dev.accumulate(::thrust::device, "w", ::thrust::raw_pointer_cast(g.data()), 100);
    dev.end_batch();
    REQUIRE(dev.scores(::thrust::device, "w").size() == 100);
    for (const double p : {-0.0, std::nextafter(1.0, 2.0), std::numeric_limits<double>::quiet_NaN()})
        REQUIRE_THROWS_WITH(dev.select(::thrust::device, p), Catch::Contains("outside (0, 1]"));

    // ceil(size/64) wrapped to 0 words for sizes near 2^64.
    using shape = std::vector<std::pair<std::string, std::uint64_t>>;
    for (const std::uint64_t n : {childtune::detail::max_tensor_elements<bfloat16> + 1, std::numeric_limits<std::uint64_t>::max()})
        REQUIRE_THROWS_WITH(ct::device_mask_set(shape{{"a", 3}, {"huge", n}}),
                            Catch::Contains("tensor 'huge' claims " + std::to_string(n) + " elements"));
    REQUIRE_THROWS_WITH(ct::device_mask_set(shape{{"a", 3}, {"a", 3}}), Catch::Contains("'a' added twice"));
    REQUIRE_THROWS_WITH(ct::device_mask_set(shape{{"", 3}}), Catch::Contains("name must not be empty"));
    REQUIRE(ct::device_mask_set(shape{{"a", 0}, {"b", 65}}).word_count() == 2);
}

TEST_CASE("mask from: a Thrust vector of 0/1 values gives the host helper's mask", "[thrust][mask_from]") {
    std::vector<float> host(70, 0.0f);
    host[0] = host[64] = host[69] = 1.0f;
    const thrust::device_vector<float> d(host.begin(), host.end());
    const bit_mask m = childtune::thrust::mask_from("w", d);
    CHECK(m == childtune::mask_from_values("w", host));
    CHECK(m.words()[0] == 1u);
    CHECK(m.words()[1] == 0b100001u);
    const thrust::device_vector<bool> b(host.begin(), host.end());
    CHECK(childtune::thrust::mask_from("w", b) == m);
    thrust::device_vector<float> bad = d;
    bad[65] = 0.25f;
    try {
        (void)childtune::thrust::mask_from("layer.w", bad);
        FAIL("no error");
    } catch (const childtune::error& e) {
        CHECK(std::string(e.what()) ==
              "childtune: mask from values: tensor 'layer.w', element 65 is 0.25; a mask holds only 0 (masked out) and 1 (kept)");
    }
}
