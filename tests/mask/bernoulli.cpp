#include <childtune/mask/bernoulli.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using childtune::bernoulli;
using childtune::detail::philox_isa;

namespace {
// |count - n p| must stay within 5 binomial standard deviations. The masks are
// deterministic, so this is a fixed check of the generator, not a flaky one.
void require_binomial(std::size_t count, std::size_t n, double p) {
    const double mean = static_cast<double>(n) * p;
    const double sd = std::sqrt(static_cast<double>(n) * p * (1.0 - p));
    INFO("count " << count << " of " << n << ", expected " << mean << " +- 5*" << sd);
    REQUIRE(std::abs(static_cast<double>(count) - mean) <= 5.0 * sd);
}

std::vector<bool> draw(const bernoulli& b, std::uint32_t key, std::uint64_t step, std::size_t n) {
    const auto v = b.view(key, step);
    std::vector<bool> keep(n);
    for (std::size_t i = 0; i < n; ++i) keep[i] = v.keep(i);
    return keep;
}

std::vector<philox_isa> isas() {
    std::vector<philox_isa> out;
    for (auto isa : {philox_isa::scalar, philox_isa::sse2, philox_isa::avx2, philox_isa::avx512})
        if (childtune::detail::philox_isa_available(isa)) out.push_back(isa);
    return out;
}
} // namespace

TEST_CASE("Bernoulli decisions follow the documented Philox definition", "[mask][bernoulli]") {
    const bernoulli b{0.3, 0x0123456789ABCDEFull};
    const auto view = b.view(77, 5);
    const std::uint32_t threshold = static_cast<std::uint32_t>(std::nearbyint(0.3 * 4294967296.0));
    for (std::uint64_t i = 0; i < 256; ++i) {
        const std::uint64_t block = 16 * (i / 64) + i % 16;
        const auto out = childtune::philox4x32({{static_cast<std::uint32_t>(block), 0, 77, 5}}, {{0x89ABCDEFu, 0x01234567u}});
        CHECK(view.keep(i) == (out.w[(i % 64) / 16] < threshold));
    }
}

TEST_CASE("Bernoulli kept fraction is binomial for many p", "[mask][bernoulli]") {
    const std::size_t n = 1'000'000;
    for (double p : {0.001, 0.1, 0.3, 0.5, 0.9, 0.999}) {
        const auto keep = draw({p, 42}, 7, 0, n);
        std::size_t kept = 0;
        for (bool k : keep) kept += k;
        CAPTURE(p);
        require_binomial(kept, n, p);
    }
}

TEST_CASE("Bernoulli masks are independent across steps, tensors and neighbouring elements", "[mask][bernoulli]") {
    const std::size_t n = 400'000;
    const double p = 0.3;
    const bernoulli b{p, 9};
    const auto a = draw(b, 1, 10, n);
    const auto next_step = draw(b, 1, 11, n);
    const auto other_tensor = draw(b, 2, 10, n);
    std::size_t both_steps = 0, both_tensors = 0, both_neighbours = 0;
    for (std::size_t i = 0; i < n; ++i) {
        both_steps += a[i] && next_step[i];
        both_tensors += a[i] && other_tensor[i];
        if (i + 1 < n) both_neighbours += a[i] && a[i + 1];
    }
    require_binomial(both_steps, n, p * p);
    require_binomial(both_tensors, n, p * p);
    require_binomial(both_neighbours, n - 1, p * p);
}

TEST_CASE("Bernoulli: the same key gives the same mask, and seeds change it", "[mask][bernoulli]") {
    CHECK(draw({0.5, 3}, 11, 4, 5000) == draw({0.5, 3}, 11, 4, 5000));
    CHECK(draw({0.5, 3}, 11, 4, 5000) != draw({0.5, 4}, 11, 4, 5000));
    CHECK(childtune::stable_tensor_key("layer.0.weight") == childtune::stable_tensor_key("layer.0.weight"));
    CHECK(childtune::stable_tensor_key("layer.0.weight") != childtune::stable_tensor_key("layer.0.bias"));
    static_assert(childtune::stable_tensor_key("") == 0x811C9DC5u);
}

TEST_CASE("Bernoulli bit words equal the scalar definition at every offset and on every ISA", "[mask][bernoulli]") {
    const bernoulli b{0.37, 0xFEEDFACECAFEBEEFull};
    for (auto isa : isas()) {
        CAPTURE(static_cast<int>(isa));
        for (std::uint64_t base : {std::uint64_t{0}, std::uint64_t{4 * 0xFFFFFFF0ull}, std::uint64_t{1} << 40}) {
            auto view = b.view(3, 17, base);
            view.set_isa(isa);
            for (std::uint64_t first = 0; first < 140; ++first) {
                const std::uint64_t bits = view.bits64(first);
                for (unsigned j = 0; j < 64; ++j) {
                    if (((bits >> j) & 1u) != static_cast<unsigned>(view.keep(first + j))) {
                        INFO("base " << base << " first " << first << " bit " << j);
                        REQUIRE(((bits >> j) & 1u) == static_cast<unsigned>(view.keep(first + j)));
                    }
                }
            }
        }
    }
}

TEST_CASE("Bernoulli: a shard's view with an offset sees the whole tensor's decisions", "[mask][bernoulli]") {
    const bernoulli b{0.25, 1};
    const auto whole = b.view(5, 2);
    for (std::uint64_t offset : {1u, 3u, 64u, 1001u}) {
        const auto shard = b.view(5, 2, offset);
        for (std::uint64_t i = 0; i < 300; ++i) REQUIRE(shard.keep(i) == whole.keep(i + offset));
    }
}

TEST_CASE("Bernoulli p = 1 keeps everything, and p outside (0, 1) other than 1 is rejected", "[mask][bernoulli]") {
    const auto v = bernoulli{1.0, 0}.view(1, 1);
    CHECK(v.bits64(0) == ~std::uint64_t{0});
    CHECK(v.keep(12345));
    CHECK(v.keep_probability() == 1.0);
    for (double p : {0.0, -0.1, 1.0000001, std::nan(""), double(INFINITY)})
        CHECK_THROWS_WITH(bernoulli{p}.validate(), Catch::Contains("outside (0, 1]"));
    CHECK_NOTHROW(bernoulli{1e-9}.validate());
    // A tiny p still keeps something: the threshold never rounds to zero.
    std::size_t kept = 0;
    const auto tiny = bernoulli{1e-12, 0}.view(0, 0);
    for (std::uint64_t i = 0; i < 1u << 20; ++i) kept += tiny.keep(i);
    CHECK(kept <= 2);
}

TEST_CASE("bad input: Bernoulli p at 0, 1, -0.0, 1 + eps, NaN and below 2^-32", "[mask][bernoulli][bad_input]") {
    for (double p : {-0.0, std::nextafter(1.0, 2.0), -std::numeric_limits<double>::infinity()})
        CHECK_THROWS_WITH(bernoulli{p}.validate(), Catch::Contains("outside (0, 1]"));
    // Positive but finer than the 32-bit keep threshold: the message prints p itself
    // (not "0.000000").
    CHECK_THROWS_WITH(bernoulli{1e-12}.validate(), Catch::Contains("p = 1e-12") && Catch::Contains("below 2^-32"));
    CHECK_THROWS_WITH(bernoulli{std::numeric_limits<double>::denorm_min()}.validate(), Catch::Contains("below 2^-32"));
    CHECK_NOTHROW(bernoulli{bernoulli::min_p}.validate());
    CHECK_NOTHROW(bernoulli{1.0}.validate());
    // p = 2^-32 is threshold 1: only a draw of exactly 0 keeps an element.
    const auto edge = bernoulli{bernoulli::min_p, 0}.view(0, 0);
    std::size_t kept = 0;
    for (std::uint64_t i = 0; i < 1u << 16; ++i) kept += edge.keep(i);
    CHECK(kept == 0);
    CHECK(edge.keep_probability() == bernoulli::min_p);
    // Element indexes near 2^64 (shards far into a tensor) do not wrap into other
    // Philox blocks: bits64 still equals the per-element decisions.
    const auto far = bernoulli{0.5, 3}.view(9, 2, std::numeric_limits<std::uint64_t>::max() - 200);
    std::uint64_t expected = 0;
    for (unsigned j = 0; j < 64; ++j) expected |= std::uint64_t{far.keep(100 + j)} << j;
    CHECK(far.bits64(100) == expected);
}
