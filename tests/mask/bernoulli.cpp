#include <childtune/mask/bernoulli.hpp>

#include <catch2/catch.hpp>

#include "support/cpu_isas.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

using childtune::bernoulli;

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
} // namespace

TEST_CASE("Bernoulli decisions follow the documented Philox definition", "[mask][bernoulli]") {
    const bernoulli b{0.3, 0x0123456789ABCDEFull, 1};
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
    for (std::uint32_t version : {1u, 2u, 3u, 4u})
        for (double p : {0.001, 0.1, 0.3, 0.5, 0.9, 0.999}) {
            const bernoulli b{p, 42, version};
            const auto keep = draw(b, 7, 0, n);
            std::size_t kept = 0;
            for (bool k : keep) kept += k;
            CAPTURE(version, p);
            require_binomial(kept, n, b.effective_p());
        }
}

TEST_CASE("Bernoulli masks are independent across steps, tensors and neighbouring elements", "[mask][bernoulli]") {
    const std::size_t n = 400'000;
    const double p = 0.3;
    const bernoulli b{p, 9, GENERATE(1u, 2u, 3u, 4u)};
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
    const bernoulli b{0.37, 0xFEEDFACECAFEBEEFull, GENERATE(1u, 2u, 3u, 4u)};
    for (auto isa : test_support::supported_cpu_isas()) {
        CAPTURE(b.version, static_cast<int>(isa));
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

TEST_CASE("Bernoulli runs of keep words equal bits64 at aligned and unaligned starts", "[mask][bernoulli]") {
    const bernoulli b{0.41, 0xABCDEFull, GENERATE(1u, 2u, 3u, 4u)};
    for (auto isa : test_support::supported_cpu_isas()) {
        for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{5}, std::uint64_t{64}, std::uint64_t{127}, std::uint64_t{1} << 33}) {
            auto view = b.view(12, 8, offset);
            view.set_isa(isa);
            for (std::uint64_t first : {0u, 1u, 63u, 64u, 200u}) {
                CAPTURE(b.version, static_cast<int>(isa), offset, first);
                std::vector<std::uint64_t> words(150);
                view.words(first, words.size(), words.data());
                for (std::size_t k = 0; k < words.size(); ++k) REQUIRE(words[k] == view.bits64(first + 64 * k));
            }
        }
    }
}

TEST_CASE("Bernoulli keep_octet gives keep() of elements i + dk at every start, offset, definition and p", "[mask][bernoulli]") {
    const std::uint32_t version = GENERATE(1u, 2u, 3u, 4u);
    for (const double p : {0.3, 0.5, 1.0}) {
        const bernoulli b{p, 99, version};
        for (std::uint64_t offset : {0u, 5u, 16u, 128u, 1001u}) {
            const auto view = b.view(7, 3, offset);
            const std::uint64_t d = view.octet_stride();
            CHECK(d == (version == 4 ? 1u : 16u));
            for (std::uint64_t i = 0; i < 600; ++i) {
                unsigned expected = 0;
                for (unsigned k = 0; k < 8; ++k) expected |= static_cast<unsigned>(view.keep(i + d * k)) << k;
                INFO("version " << version << ", p " << p << ", offset " << offset << ", i " << i);
                REQUIRE(view.keep_octet(i) == expected);
            }
        }
    }
}

TEST_CASE("Bernoulli: a shard's view with an offset sees the whole tensor's decisions", "[mask][bernoulli]") {
    const bernoulli b{0.25, 1, GENERATE(1u, 2u, 3u, 4u)};
    const auto whole = b.view(5, 2);
    for (std::uint64_t offset : {1u, 3u, 64u, 1001u}) {
        const auto shard = b.view(5, 2, offset);
        for (std::uint64_t i = 0; i < 300; ++i) REQUIRE(shard.keep(i) == whole.keep(i + offset));
    }
}

TEST_CASE("Bernoulli p = 1 keeps everything, and p outside (0, 1) other than 1 is rejected", "[mask][bernoulli]") {
    const std::uint32_t version = GENERATE(1u, 2u, 3u, 4u);
    const auto v = bernoulli{1.0, 0, version}.view(1, 1);
    CHECK(v.bits64(0) == ~std::uint64_t{0});
    CHECK(v.keep(12345));
    CHECK(v.keep_probability() == 1.0);
    for (double p : {0.0, -0.1, 1.0000001, std::nan(""), double(INFINITY)})
        CHECK_THROWS_WITH((bernoulli{p, 0, version}.validate()), Catch::Contains("outside (0, 1]"));
    CHECK_NOTHROW(bernoulli{1e-9, 0, 1}.validate());
    // A tiny p still keeps something: the threshold never rounds to zero.
    std::size_t kept = 0;
    const auto tiny = bernoulli{1e-12, 0, 1}.view(0, 0);
    for (std::uint64_t i = 0; i < 1u << 20; ++i) kept += tiny.keep(i);
    CHECK(kept <= 2);
}

TEST_CASE("bad input: Bernoulli p at 0, 1, -0.0, 1 + eps, NaN and below 2^-32", "[mask][bernoulli][bad_input]") {
    for (double p : {-0.0, std::nextafter(1.0, 2.0), -std::numeric_limits<double>::infinity()})
        CHECK_THROWS_WITH(bernoulli{p}.validate(), Catch::Contains("outside (0, 1]"));
    // Positive but finer than the 32-bit keep threshold: the message prints p itself
    // (not "0.000000").
    CHECK_THROWS_WITH((bernoulli{1e-12, 0, 1}.validate()), Catch::Contains("p = 1e-12") && Catch::Contains("below 2^-32"));
    CHECK_THROWS_WITH((bernoulli{std::numeric_limits<double>::denorm_min(), 0, 1}.validate()), Catch::Contains("below 2^-32"));
    CHECK_NOTHROW(bernoulli{bernoulli::min_p, 0, 1}.validate());
    CHECK_NOTHROW(bernoulli{1.0}.validate());
    // p = 2^-32 is threshold 1: only a draw of exactly 0 keeps an element.
    const auto edge = bernoulli{bernoulli::min_p, 0, 1}.view(0, 0);
    std::size_t kept = 0;
    for (std::uint64_t i = 0; i < 1u << 16; ++i) kept += edge.keep(i);
    CHECK(kept == 0);
    CHECK(edge.keep_probability() == bernoulli::min_p);
    // Element indexes near 2^64 (shards far into a tensor) do not wrap into other
    // Philox blocks: bits64 still equals the per-element decisions.
    for (std::uint32_t version : {1u, 2u, 3u, 4u}) {
        const auto far = bernoulli{0.5, 3, version}.view(9, 2, std::numeric_limits<std::uint64_t>::max() - 200);
        std::uint64_t expected = 0;
        for (unsigned j = 0; j < 64; ++j) expected |= std::uint64_t{far.keep(100 + j)} << j;
        CHECK(far.bits64(100) == expected);
    }
}

// Version 2, hand-derived from Random123's first known-answer vector: seed 0,
// tensor key 0, step 0 and element e < 128 with e % 16 == 0 read block 0, which
// is philox4x32(counter 0, key 0) = 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
// Element 16 j reads word j % 4, half j / 4: the draws are
// e8d5 c58d ac4c dbd8 (low halves), 6627 e169 bc57 9b00 (high halves).
TEST_CASE("Bernoulli version 2 known answers from the Philox KAT vector", "[mask][bernoulli]") {
    const std::uint32_t draws[8] = {0xe8d5, 0xc58d, 0xac4c, 0xdbd8, 0x6627, 0xe169, 0xbc57, 0x9b00};
    // Thresholds at and just above each draw (keep iff draw < units).
    for (std::uint32_t units : {0x6627u, 0x6628u, 0x9b00u, 0xac4cu, 0xac4du, 0xc58eu, 0xe8d6u, 0xFFFFu, 1u}) {
        const bernoulli b{units / 65536.0, 0, 2};
        CAPTURE(units);
        CHECK(b.effective_p() == units / 65536.0);
        for (auto isa : test_support::supported_cpu_isas()) {
            auto v = b.view(0, 0);
            v.set_isa(isa);
            CHECK(v.keep_probability() == units / 65536.0);
            std::uint64_t words[2];
            v.words(0, 2, words);
            for (unsigned j = 0; j < 8; ++j) {
                CAPTURE(j, static_cast<int>(isa));
                CHECK(v.keep(16 * j) == (draws[j] < units));
                CHECK(((words[j / 4] >> (16 * (j % 4))) & 1u) == (draws[j] < units ? 1u : 0u));
            }
        }
    }
    // p = 0.5 is 0x8000 units: of the eight draws only 6627 (element 64) is below.
    const auto half = bernoulli{0.5, 0, 2}.view(0, 0);
    for (unsigned j = 0; j < 8; ++j) CHECK(half.keep(16 * j) == (j == 4));
}

TEST_CASE("Bernoulli version 2 follows the documented layout (a transcription of the definition)", "[mask][bernoulli]") {
    const std::uint64_t seed = 0x0123456789ABCDEFull;
    const bernoulli b{0.3, seed, 2};
    const auto units = static_cast<std::uint32_t>(std::nearbyint(0.3 * 65536.0)); // 19661
    CHECK(b.effective_p() == 19661.0 / 65536.0);
    for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{77}, std::uint64_t{1} << 36}) {
        const auto view = b.view(77, 5, offset);
        CHECK(view.keep_probability() == 19661.0 / 65536.0);
        for (std::uint64_t i = 0; i < 512; ++i) {
            const std::uint64_t e = i + offset;
            const std::uint64_t block = 16 * (e / 128) + e % 16;
            const std::uint64_t j = (e % 128) / 16;
            const auto out = childtune::philox4x32({{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 77, 5}},
                                                   {{0x89ABCDEFu, 0x01234567u}});
            const std::uint32_t draw = (out.w[j % 4] >> (16 * (j / 4))) & 0xFFFFu;
            REQUIRE(view.keep(i) == (draw < units));
        }
    }
}

TEST_CASE("Bernoulli version 2 rounds p to units of 2^-16 and scales by the rounded p", "[mask][bernoulli]") {
    CHECK(bernoulli{0.1, 0, 2}.effective_p() == 6554.0 / 65536.0);
    CHECK(bernoulli{0.1, 0, 1}.effective_p() == 0.1);
    CHECK(bernoulli{0.1, 0, 2}.view(0, 0).keep_probability() == 6554.0 / 65536.0);
    CHECK(bernoulli{0.1, 0, 1}.view(0, 0).keep_probability() == 0.1);
    // Closer to 1 than half a unit: every element is kept, with scale 1.
    const auto near_one = bernoulli{1.0 - 1e-6, 0, 2}.view(3, 3);
    CHECK(near_one.keep_probability() == 1.0);
    CHECK(near_one.bits64(5) == ~std::uint64_t{0});
    // One unit below 1 still drops 1 in 65536.
    const auto below = bernoulli{65535.0 / 65536.0, 0, 2}.view(3, 3);
    std::uint64_t dropped = 0;
    std::uint64_t w[1024];
    below.words(0, 1024, w);
    for (auto x : w) dropped += static_cast<std::uint64_t>(64 - std::popcount(x));
    CHECK(dropped > 0);
    CHECK(dropped < 10);
    // The smallest p of version 2 is one unit.
    CHECK(bernoulli::min_p_of(2) == 1.0 / 65536.0);
    CHECK(bernoulli{bernoulli::min_p_v2, 0, 2}.view(0, 0).keep_probability() == bernoulli::min_p_v2);
    CHECK(bernoulli{}.version == 4);
    CHECK(childtune::bernoulli_default_version == 4);
    CHECK(bernoulli{0.3, 1, 1} != bernoulli{0.3, 1, 2});
}

TEST_CASE("bad input: Bernoulli version 2 p below 2^-16 and unknown definition versions", "[mask][bernoulli][bad_input]") {
    CHECK_THROWS_WITH((bernoulli{1e-5, 0, 2}.validate()), Catch::Contains("p = 1e-05") && Catch::Contains("below 2^-16"));
    CHECK_THROWS_WITH((bernoulli{std::nextafter(1.0 / 65536.0, 0.0), 0, 2}.validate()), Catch::Contains("below 2^-16"));
    CHECK_NOTHROW(bernoulli{1.0 / 65536.0, 0, 2}.validate());
    CHECK_NOTHROW(bernoulli{1e-5, 0, 1}.validate());
    for (std::uint32_t v : {0u, 5u, 0xFFFFFFFFu})
        CHECK_THROWS_WITH((bernoulli{0.5, 0, v}.validate()),
                          Catch::Contains("definition version = " + std::to_string(v)) && Catch::Contains("not 1, 2, 3 or 4"));
}

namespace {
// Version 3's draws, transcribed from the definition in mask/bernoulli.hpp:
// the 16 draws of lane m of super-group s (elements 256 s + m + 16 k), each 32
// plane bits, most significant first; plane j is half j % 2 of word (j % 8) / 2
// of block 4 (16 s + m) + j / 8.
std::array<std::uint32_t, 16> v3_lane_draws(std::uint64_t seed, std::uint32_t key, std::uint32_t step, std::uint64_t s,
                                            unsigned m) {
    std::array<std::uint32_t, 16> draws{};
    for (unsigned level = 0; level < 4; ++level) {
        const std::uint64_t block = 4 * (16 * s + m) + level;
        const auto out = childtune::philox4x32({{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), key, step}},
                                               {{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}});
        for (unsigned j = 0; j < 8; ++j) {
            const std::uint32_t plane = (out.w[j / 2] >> (16 * (j % 2))) & 0xFFFFu;
            for (unsigned k = 0; k < 16; ++k) draws[k] |= ((plane >> k) & 1u) << (31 - (8 * level + j));
        }
    }
    return draws;
}
// The draw of element e = 256 s + m + 16 k.
std::uint32_t v3_draw(std::uint64_t seed, std::uint32_t key, std::uint32_t step, std::uint64_t e) {
    return v3_lane_draws(seed, key, step, e / 256, static_cast<unsigned>(e % 16))[(e % 256) / 16];
}
// Version 4's draws, transcribed the same way: the 32 draws of lane l of
// super-group s (elements 256 s + 32 l + b); plane j is bit b of word j % 4 of
// the ARS-7 block 4 (16 s + 8 ((j % 8) / 4) + l) + j / 8.
std::array<std::uint32_t, 32> v4_lane_draws(std::uint64_t seed, std::uint32_t key, std::uint32_t step, std::uint64_t s,
                                            unsigned l) {
    std::array<std::uint32_t, 32> draws{};
    for (unsigned j = 0; j < 32; j += 4) {
        const std::uint64_t block = 4 * (16 * s + 8 * ((j % 8) / 4) + l) + j / 8;
        const auto out = childtune::ars4x32<7>({{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), key, step}},
                                               {{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), 0, 0}});
        for (unsigned k = 0; k < 4; ++k)
            for (unsigned b = 0; b < 32; ++b) draws[b] |= ((out.w[k] >> b) & 1u) << (31 - (j + k));
    }
    return draws;
}
// The draw of element e under version 3 or 4.
std::uint32_t plane_draw(std::uint32_t version, std::uint64_t seed, std::uint32_t key, std::uint32_t step, std::uint64_t e) {
    if (version == 3) return v3_draw(seed, key, step, e);
    return v4_lane_draws(seed, key, step, e / 256, static_cast<unsigned>(e % 256 / 32))[e % 32];
}
TEST_CASE("Bernoulli definitions: what sets them apart, by name", "[mask][bernoulli]") {
    using namespace childtune::detail;
    STATIC_REQUIRE(!keeps_by_planes(1) && !keeps_by_planes(2) && keeps_by_planes(3) && keeps_by_planes(4));
    STATIC_REQUIRE(!lanes_are_consecutive(3) && lanes_are_consecutive(4));
    STATIC_REQUIRE(!blocks_by_ars(1) && !blocks_by_ars(2) && !blocks_by_ars(3) && blocks_by_ars(4));
    // (The views' octet_stride, which lanes_are_consecutive decides, is checked
    // for every definition by the keep_octet case above.)
}

#if CHILDTUNE_HAS_SSE2
TEST_CASE("Bernoulli views resolve the AES path once, when made", "[mask][bernoulli]") {
    using childtune::detail::aes_path;
    const aes_path expected = childtune::detail::resolve_aes_path(aes_path::automatic, true);
    CHECK(expected != aes_path::automatic);
    CHECK((expected == (childtune::detail::cpu_has_aesni() ? aes_path::aesni : aes_path::software) ||
           expected == aes_path::vaes));
    childtune::bernoulli_view v(0.3, 1, 2, 3, 0, 4);
    CHECK(v.keep_params().aes == expected);
    v.set_aes_path(aes_path::software);
    CHECK(v.keep_params().aes == aes_path::software);
    v.set_aes_path(aes_path::automatic);
    CHECK(v.keep_params().aes == expected);
    // The policy's views too (the path the fused step's generators read).
    CHECK(bernoulli{0.3, 7}.view(1, 2).keep_params().aes == expected);
}
#endif

// The views of version 3 on every instruction set, and of version 4 on every
// instruction set and with each AES path this CPU has (random/detail/ars_x86.hpp).
std::vector<childtune::bernoulli_view> views_on_every_path(const childtune::bernoulli_view& view) {
    std::vector<childtune::bernoulli_view> out;
    std::vector<childtune::detail::aes_path> paths{childtune::detail::aes_path::automatic};
    if (view.version() == 4) {
        paths = {childtune::detail::aes_path::software};
        if (childtune::detail::cpu_has_aesni()) paths.push_back(childtune::detail::aes_path::aesni);
#if CHILDTUNE_HAS_AVX2_DISPATCH
        if (childtune::detail::cpu_has_vaes()) paths.push_back(childtune::detail::aes_path::vaes);
#endif
    }
    for (auto isa : test_support::supported_cpu_isas())
        for (auto path : paths) {
            if (path == childtune::detail::aes_path::vaes && isa < childtune::detail::cpu_isa::avx2) continue;
            auto v = view;
            v.set_isa(isa);
            v.set_aes_path(path);
            out.push_back(v);
        }
    return out;
}
} // namespace

// Version 3, hand-derived from the same vector: element 256 s + m + 16 k takes
// bit k of each 16-bit half of block 4 (16 s + m), low half first, word by word,
// as its draw's top byte. Block 0 = 6627e8d5 e169c58d bc57ac4c 9b00dbd8 gives the
// planes e8d5 6627 c58d e169 ac4c bc57 dbd8 9b00; element 0 (k = 0) reads their
// bit 0: 1 1 1 1 0 1 0 0, a draw in [0xF4000000, 0xF5000000); element 16 (k = 1)
// their bit 1: 0 1 0 0 0 1 0 0, a draw in [0x44000000, 0x45000000).
TEST_CASE("Bernoulli version 3 known answers from the Philox KAT vector", "[mask][bernoulli]") {
    const struct {
        std::uint64_t element;
        std::uint32_t threshold;
        bool keep;
    } cases[] = {{0, 0xF4000000u, false}, {0, 0xF5000000u, true}, {0, 0x80000000u, false}, {0, 0xFFFFFFFFu, true},
                 {16, 0x44000000u, false}, {16, 0x45000000u, true}, {16, 0x80000000u, true}, {16, 0x40000000u, false}};
    for (const auto& c : cases) {
        const bernoulli b{c.threshold / 4294967296.0, 0, 3};
        for (auto isa : test_support::supported_cpu_isas()) {
            auto v = b.view(0, 0);
            v.set_isa(isa);
            std::uint64_t words[4];
            v.words(0, 4, words);
            CAPTURE(c.element, c.threshold, static_cast<int>(isa));
            CHECK(v.keep(c.element) == c.keep);
            CHECK(((words[c.element / 64] >> (c.element % 64)) & 1u) == (c.keep ? 1u : 0u));
        }
    }
}

TEST_CASE("Bernoulli versions 3 and 4 follow the documented layout (a transcription of the definition)", "[mask][bernoulli]") {
    const std::uint64_t seed = 0x0123456789ABCDEFull;
    const std::uint32_t version = GENERATE(3u, 4u);
    const bernoulli b{0.3, seed, version};
    const auto threshold = static_cast<std::uint32_t>(std::nearbyint(0.3 * 4294967296.0));
    CHECK(b.effective_p() == 0.3); // the 32-bit threshold of version 1: p is not rounded to 2^-16
    for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{77}, std::uint64_t{1} << 36}) {
        const auto view = b.view(77, 5, offset);
        CHECK(view.keep_probability() == 0.3);
        for (const auto& v : views_on_every_path(view)) {
            std::vector<std::uint64_t> words(12);
            v.words(0, words.size(), words.data());
            for (std::uint64_t i = 0; i < 64 * words.size(); ++i) {
                const bool expected = plane_draw(version, seed, 77, 5, i + offset) < threshold;
                INFO("version " << version << " offset " << offset << " element " << i << " AES path "
                                << static_cast<int>(v.keep_params().aes));
                REQUIRE(v.keep(i) == expected);
                REQUIRE(((words[i / 64] >> (i % 64)) & 1u) == (expected ? 1u : 0u));
            }
        }
    }
}

TEST_CASE("Bernoulli versions 3 and 4 decide draws tied with the threshold through 8, 16, 24 and 32 bits on every ISA",
          "[mask][bernoulli]") {
    // The threshold is set to an element's own draw, with its low bits changed,
    // so that the element's lane needs its second, third or fourth block; the
    // keep words of the super-group around it (and of the runs the passes draw,
    // 64 words) must still equal the transcription.
    const std::uint64_t seed = 0xC0FFEE;
    const std::uint32_t key = 4242, step = 9;
    const std::uint32_t version = GENERATE(3u, 4u);
    for (std::uint64_t target : {std::uint64_t{5}, std::uint64_t{300}, std::uint64_t{4095}, std::uint64_t{70000}}) {
        const std::uint32_t draw = plane_draw(version, seed, key, step, target);
        for (unsigned tied_bits : {8u, 16u, 24u, 31u, 32u}) {
            for (int side : {-1, 1}) {
                // Equal in the top `tied_bits` bits, then one unit of the next bit away.
                std::uint32_t threshold = draw;
                if (tied_bits < 32) {
                    const std::uint32_t unit = std::uint32_t{1} << (31 - tied_bits);
                    threshold = side > 0 ? (draw | unit) : (draw & ~unit);
                    if (threshold == draw) threshold = side > 0 ? draw + unit : draw - unit;
                }
                if (threshold == 0) continue;
                const double p = threshold / 4294967296.0;
                const bernoulli b{p, seed, version};
                CHECK(b.effective_p() == p);
                for (const auto& v : views_on_every_path(b.view(key, step))) {
                    std::vector<std::uint64_t> words(64 * 3);
                    v.words(0, words.size(), words.data());
                    CAPTURE(version, target, tied_bits, side, static_cast<int>(v.keep_params().aes));
                    for (std::uint64_t e = target / 256 * 256; e < target / 256 * 256 + 256 && e < 64 * words.size(); ++e) {
                        const bool expected = plane_draw(version, seed, key, step, e) < threshold;
                        CAPTURE(e);
                        REQUIRE(v.keep(e) == expected);
                        REQUIRE(((words[e / 64] >> (e % 64)) & 1u) == (expected ? 1u : 0u));
                        if (v.octet_stride() == 1) // version 4: eight consecutive elements
                            REQUIRE(((v.keep_octet(e / 8 * 8) >> (e % 8)) & 1u) == (expected ? 1u : 0u));
                        else
                            REQUIRE(((v.keep_octet(e / 16 * 16 % 256 < 128 ? e % 16 + e / 256 * 256 : e % 16 + e / 256 * 256 + 128) >>
                                      ((e % 128) / 16)) &
                                     1u) == (expected ? 1u : 0u));
                    }
                    REQUIRE(v.keep(target) == (draw < threshold));
                }
            }
        }
    }
}

TEST_CASE("Bernoulli versions 3 and 4 queue any pattern of tied lanes: keep words equal the transcription on every ISA",
          "[mask][bernoulli]") {
    // A lane whose draws tie the threshold in their top byte waits for its
    // next block(s) in a queue that the vector generators fill without a branch
    // (a permutation per mask of eight lanes). Over 4096 super-groups every
    // count of tied lanes in a half (version 4: in a super-group) up to three
    // occurs, and chunks of 16 super-groups queue more lanes than one vector
    // pass takes.
    const std::uint64_t seed = 0x5EED0F7155ull;
    const std::uint32_t key = 99, step = 3;
    const double p = 0.3;
    const std::uint32_t version = GENERATE(3u, 4u);
    const auto threshold = static_cast<std::uint32_t>(std::nearbyint(p * 4294967296.0));
    constexpr std::uint64_t groups = 4096;
    std::vector<std::uint64_t> expected(4 * groups, 0);
    std::array<std::size_t, 9> halves_with{};
    std::size_t largest_chunk = 0, chunk_lanes = 0;
    for (std::uint64_t s = 0; s < groups; ++s) {
        unsigned tied_in_half[2] = {0, 0};
        const unsigned lanes = version == 3 ? 16 : 8, per_lane = 256 / lanes;
        for (unsigned m = 0; m < lanes; ++m) {
            std::array<std::uint32_t, 32> draws{};
            if (version == 3) {
                const auto d = v3_lane_draws(seed, key, step, s, m);
                std::copy(d.begin(), d.end(), draws.begin());
            } else {
                draws = v4_lane_draws(seed, key, step, s, m);
            }
            bool tied = false;
            for (unsigned k = 0; k < per_lane; ++k) {
                const std::uint64_t e = version == 3 ? 256 * s + m + 16 * k : 256 * s + 32 * m + k;
                if (draws[k] < threshold) expected[e / 64] |= std::uint64_t{1} << (e % 64);
                tied = tied || (draws[k] >> 24) == (threshold >> 24);
            }
            tied_in_half[version == 3 ? m / 8 : 0] += tied ? 1u : 0u;
        }
        ++halves_with[tied_in_half[0]];
        ++halves_with[tied_in_half[1]];
        chunk_lanes += tied_in_half[0] + tied_in_half[1];
        if (s % 16 == 15) {
            largest_chunk = std::max(largest_chunk, chunk_lanes);
            chunk_lanes = 0;
        }
    }
    CAPTURE(halves_with[0], halves_with[1], halves_with[2], halves_with[3], largest_chunk);
    REQUIRE(halves_with[0] > 0);
    REQUIRE(halves_with[1] > 0);
    REQUIRE(halves_with[2] > 0);
    REQUIRE(halves_with[3] > 0);
    REQUIRE(largest_chunk > 16);

    const bernoulli b{p, seed, version};
    for (const auto& v : views_on_every_path(b.view(key, step))) {
        for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{6}}) { // word 0, and a ragged start (word 6)
            CAPTURE(version, static_cast<int>(v.keep_params().aes), first);
            std::vector<std::uint64_t> words(expected.size() - first);
            v.words(64 * first, words.size(), words.data());
            for (std::size_t w = 0; w < words.size(); ++w) {
                if (words[w] != expected[first + w]) {
                    INFO("word " << first + w);
                    REQUIRE(words[w] == expected[first + w]);
                }
            }
        }
    }
}

namespace {
// Keep words of `n` elements (n a multiple of 64) through the vectorised path.
std::vector<std::uint64_t> words_of(const bernoulli& b, std::uint32_t key, std::uint64_t step, std::size_t n) {
    std::vector<std::uint64_t> w(n / 64);
    b.view(key, step).words(0, w.size(), w.data());
    return w;
}

std::uint64_t ones(const std::vector<std::uint64_t>& w) {
    std::uint64_t c = 0;
    for (auto x : w) c += static_cast<std::uint64_t>(std::popcount(x));
    return c;
}

// Element i + lag of `w` (zero past the end), as words.
std::vector<std::uint64_t> shifted(const std::vector<std::uint64_t>& w, std::size_t lag) {
    std::vector<std::uint64_t> out(w.size(), 0);
    const std::size_t q = lag / 64, r = lag % 64;
    for (std::size_t k = 0; k + q < w.size(); ++k) {
        out[k] = w[k + q] >> r;
        if (r != 0 && k + q + 1 < w.size()) out[k] |= w[k + q + 1] << (64 - r);
    }
    return out;
}

// Pearson's chi^2 (1 degree of freedom) of the 2x2 table of (a_i, b_i) over the
// first n elements; 16 is the 4-sigma point (P ~ 6e-5).
double chi2_2x2(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b, std::size_t n) {
    double c11 = 0, ca = 0, cb = 0;
    for (std::size_t k = 0; k < n / 64; ++k) {
        c11 += std::popcount(a[k] & b[k]);
        ca += std::popcount(a[k]);
        cb += std::popcount(b[k]);
    }
    const double N = static_cast<double>(n);
    const double observed[4] = {c11, ca - c11, cb - c11, N - ca - cb + c11};
    const double expected[4] = {ca * cb / N, ca * (N - cb) / N, (N - ca) * cb / N, (N - ca) * (N - cb) / N};
    double chi2 = 0;
    for (int i = 0; i < 4; ++i) chi2 += (observed[i] - expected[i]) * (observed[i] - expected[i]) / expected[i];
    return chi2;
}
} // namespace

TEST_CASE("statistical: Bernoulli kept fraction over 10^8 decisions is within 4 sigma", "[mask][bernoulli][statistical]") {
    const std::size_t n = 100'000'000; // decisions per (version, p): 1562500 keep words
    std::vector<std::uint64_t> w(n / 64);
    for (std::uint32_t version : {1u, 2u, 3u, 4u})
        for (double p : {0.01, 0.1, 0.3, 0.5, 0.9}) {
            const bernoulli b{p, 0x5EED0000u + version, version};
            b.view(0xA5A5A5A5u, 123).words(0, w.size(), w.data());
            const double q = b.effective_p();
            const double mean = static_cast<double>(n) * q, sd = std::sqrt(static_cast<double>(n) * q * (1 - q));
            const double kept = static_cast<double>(ones(w));
            INFO("version " << version << " p " << p << ": kept " << kept << ", expected " << mean << " +- 4*" << sd);
            CHECK(std::abs(kept - mean) <= 4 * sd);
        }
}

TEST_CASE("statistical: Bernoulli decisions of neighbouring elements, steps, tensor keys and seeds are independent (chi^2 on 2x2 tables)",
          "[mask][bernoulli][statistical]") {
    const std::size_t n = std::size_t{1} << 24;
    for (std::uint32_t version : {1u, 2u, 3u, 4u})
        for (double p : {0.1, 0.5}) {
            const bernoulli b{p, 1234567, version};
            bernoulli other_seed = b;
            other_seed.seed += 1;
            const auto a = words_of(b, 1000, 50, n);
            CAPTURE(version, p);
            // Lags 1 (next lane), 16 (next word of the same block; version 3: the
            // next bit of the same planes), 64 (version 2: the other 16-bit half of
            // the same word), 128 and 256 (version 3: the same lane of the next
            // super-group).
            for (std::size_t lag : {1u, 16u, 64u, 128u, 256u}) {
                CAPTURE(lag);
                CHECK(chi2_2x2(a, shifted(a, lag), n - lag - 64) < 16.0);
            }
            CHECK(chi2_2x2(a, words_of(b, 1000, 51, n), n) < 16.0);          // consecutive steps
            CHECK(chi2_2x2(a, words_of(b, 1001, 50, n), n) < 16.0);          // consecutive tensor keys
            CHECK(chi2_2x2(a, words_of(other_seed, 1000, 50, n), n) < 16.0); // consecutive seeds
        }
}

TEST_CASE("statistical: Bernoulli decisions pass the Wald-Wolfowitz runs test", "[mask][bernoulli][statistical]") {
    const std::size_t n = std::size_t{1} << 24;
    for (std::uint32_t version : {1u, 2u, 3u, 4u})
        for (double p : {0.1, 0.3, 0.5}) {
            const auto w = words_of(bernoulli{p, 99, version}, 7, 3, n);
            // Runs = 1 + the number of i with x_i != x_{i+1}.
            const auto next = shifted(w, 1);
            double changes = 0;
            for (std::size_t k = 0; k < w.size(); ++k) {
                std::uint64_t d = w[k] ^ next[k];
                if (k + 1 == w.size()) d &= ~(std::uint64_t{1} << 63); // no element n
                changes += std::popcount(d);
            }
            const double runs = changes + 1, n1 = static_cast<double>(ones(w)), n0 = static_cast<double>(n) - n1;
            const double N = static_cast<double>(n);
            const double mean = 2 * n1 * n0 / N + 1, var = (mean - 1) * (mean - 2) / (N - 1);
            INFO("version " << version << " p " << p << ": runs " << runs << ", expected " << mean << " +- 4*" << std::sqrt(var));
            CHECK(std::abs(runs - mean) <= 4 * std::sqrt(var));
        }
}
