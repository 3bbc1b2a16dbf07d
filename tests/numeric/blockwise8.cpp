#include <childtune/numeric/blockwise8.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using namespace childtune::detail;

namespace {
// A naive transcription of bitsandbytes' create_dynamic_map(signed, 7, 8) as
// the paper describes it: per decade i, linspace(0.1, 1, k + 1), its
// midpoints times 10^(i - 6) (and their negatives when signed), then 0 and 1.
std::vector<float> naive_map(bool is_signed) {
    std::vector<double> data;
    for (int i = 0; i < 7; ++i) {
        const int k = is_signed ? (1 << i) : (1 << (i + 1));
        std::vector<double> boundaries(static_cast<std::size_t>(k) + 1);
        for (int j = 0; j <= k; ++j) boundaries[static_cast<std::size_t>(j)] = 0.1 + (1.0 - 0.1) * j / k;
        for (int j = 0; j < k; ++j) {
            const double mean = (boundaries[static_cast<std::size_t>(j)] + boundaries[static_cast<std::size_t>(j) + 1]) / 2.0;
            data.push_back(std::pow(10.0, i - 6) * mean);
            if (is_signed) data.push_back(-std::pow(10.0, i - 6) * mean);
        }
    }
    data.push_back(0.0);
    data.push_back(1.0);
    std::sort(data.begin(), data.end());
    return std::vector<float>(data.begin(), data.end());
}

// Nearest map entry by linear scan, distances in double, ties to the lower
// index; in the unsigned map (no negative entry) a positive x never gets code 0.
std::uint8_t naive_encode(const std::vector<float>& map, float x) {
    std::size_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < map.size(); ++c) {
        const double d = std::fabs(static_cast<double>(map[c]) - static_cast<double>(x));
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    if (map[0] == 0.0f && best == 0 && x > 0.0f) best = 1;
    return static_cast<std::uint8_t>(best);
}
} // namespace

TEST_CASE("the dynamic maps hold the published values", "[numeric][blockwise8]") {
    const auto& s = signed_dynamic_map().values();
    const auto& u = unsigned_dynamic_map().values();
    // Hand-checked: decade 0 of the signed map has one midpoint, (0.1 + 1)/2 = 0.55,
    // times 1e-6; its top decade has 64 midpoints of steps 0.9/64, the last one
    // 1 - 0.9/128 = 0.99296875; 0 is code 127 and 1 code 255.
    CHECK(s[0] == static_cast<float>(-0.99296875));
    CHECK(s[126] == static_cast<float>(-5.5e-7));
    CHECK(s[127] == 0.0f);
    CHECK(s[128] == static_cast<float>(5.5e-7));
    CHECK(s[129] == static_cast<float>(3.25e-6)); // decade 1: midpoints of linspace(0.1, 1, 3), 0.325 and 0.775, x 1e-5
    CHECK(s[254] == static_cast<float>(0.99296875));
    CHECK(s[255] == 1.0f);
    // The unsigned map: decade 0 has midpoints of linspace(0.1, 1, 3): 0.325, 0.775.
    CHECK(u[0] == 0.0f);
    CHECK(u[1] == static_cast<float>(3.25e-7));
    CHECK(u[2] == static_cast<float>(7.75e-7));
    CHECK(u[3] == static_cast<float>(2.125e-6)); // decade 1: 0.2125 x 1e-5
    CHECK(u[254] == static_cast<float>(0.996484375)); // top decade: 128 midpoints, the last 1 - 0.9/256
    CHECK(u[255] == 1.0f);
    CHECK(signed_dynamic_map().zero_code() == 127);
    CHECK(unsigned_dynamic_map().zero_code() == 0);
    for (bool is_signed : {true, false}) {
        const auto naive = naive_map(is_signed);
        const auto& m = (is_signed ? signed_dynamic_map() : unsigned_dynamic_map()).values();
        for (std::size_t c = 0; c < 256; ++c) REQUIRE(m[c] == naive[c]);
        REQUIRE(std::is_sorted(m.begin(), m.end()));
        REQUIRE(std::adjacent_find(m.begin(), m.end()) == m.end()); // 256 distinct codes
    }
}

TEST_CASE("encoding picks the nearest code, as a linear scan does", "[numeric][blockwise8]") {
    for (bool is_signed : {true, false}) {
        CAPTURE(is_signed);
        const dynamic_map& map = is_signed ? signed_dynamic_map() : unsigned_dynamic_map();
        const auto naive = naive_map(is_signed);
        std::vector<float> xs;
        // Every entry, every midpoint between neighbours, and their float neighbours.
        for (std::size_t c = 0; c < 256; ++c) {
            xs.push_back(naive[c]);
            if (c + 1 < 256) xs.push_back(static_cast<float>((static_cast<double>(naive[c]) + naive[c + 1]) / 2.0));
        }
        const std::size_t base = xs.size();
        for (std::size_t i = 0; i < base; ++i) {
            xs.push_back(std::nextafter(xs[i], 2.0f));
            xs.push_back(std::nextafter(xs[i], -2.0f));
        }
        std::mt19937 rng(11);
        std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
        std::uniform_real_distribution<float> exponent(-30.0f, 0.0f);
        for (int i = 0; i < 200000; ++i) xs.push_back(uniform(rng));
        for (int i = 0; i < 200000; ++i) xs.push_back((i % 2 ? -1.0f : 1.0f) * std::pow(2.0f, exponent(rng)));
        xs.push_back(0.0f);
        xs.push_back(-0.0f);
        xs.push_back(std::numeric_limits<float>::denorm_min());
        // And every 4099th float pattern in [-1, 1] (about 260 000 of them).
        for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 4099) {
            const float x = std::bit_cast<float>(static_cast<std::uint32_t>(u));
            if (std::fabs(x) <= 1.0f) xs.push_back(x);
        }
        for (float x : xs) {
            if (std::fabs(x) > 1.0f) continue;
            CAPTURE(x);
            REQUIRE(map.encode(x) == naive_encode(naive, x));
        }
        // A NaN (a state that overflowed) has no nearest code: it encodes as 255.
        REQUIRE(map.encode(std::numeric_limits<float>::quiet_NaN()) == 255);
        REQUIRE(map.encode(-std::numeric_limits<float>::quiet_NaN()) == 255);
    }
}

TEST_CASE("a block is scaled by its absolute maximum and decodes within half a code step", "[numeric][blockwise8]") {
    const dynamic_map& map = signed_dynamic_map();
    std::vector<float> x = {0.5f, -2.0f, 1e-3f, 0.0f, 1.5f};
    std::vector<std::uint8_t> codes(x.size());
    const float absmax = quantise_block(map, x.data(), x.size(), codes.data());
    REQUIRE(absmax == 2.0f);
    // -2 is -1 after scaling: the nearest entry is the most negative one.
    REQUIRE(codes[1] == 0);
    REQUIRE(codes[3] == map.zero_code());
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(codes[i] == naive_encode(naive_map(true), x[i] / 2.0f));
    std::vector<float> back(x.size());
    dequantise_block(map, codes.data(), codes.size(), absmax, back.data());
    REQUIRE(back[3] == 0.0f);
    REQUIRE(back[4] == map.values()[codes[4]] * 2.0f);
    // Relative error bound: in decade i the entries are 0.9/2^i * 10^(i-6) apart,
    // at least 0.1 * 10^(i-6): half a step is at most 0.9/2^(i+1) / 0.1 of the
    // value, 12.5 % in decade 2 (where 1e-3/2 falls), 0.7 % near 1.
    REQUIRE(std::fabs(back[2] - x[2]) <= 0.125f * x[2]);
    REQUIRE(std::fabs(back[0] - x[0]) <= 0.00703125f * 2.0f);

    std::vector<float> zeros(7, 0.0f), out(7, 1.0f);
    std::vector<std::uint8_t> zc(7);
    REQUIRE(quantise_block(map, zeros.data(), 7, zc.data()) == 0.0f);
    dequantise_block(map, zc.data(), 7, 0.0f, out.data());
    for (float v : out) REQUIRE(std::signbit(v) == false);
    for (float v : out) REQUIRE(v == 0.0f);
}

TEST_CASE("buffer sizes of 8-bit state", "[numeric][blockwise8]") {
    REQUIRE(blockwise8_blocks(0) == 0);
    REQUIRE(blockwise8_blocks(256) == 1);
    REQUIRE(blockwise8_blocks(257) == 2);
    REQUIRE(blockwise8_buffer_bytes(1000, 1000) == 1000 + 4 * 4);
    REQUIRE(blockwise8_buffer_bytes(301, 1000) == 304 + 4 * 4); // compact: codes of the kept, scales of the tensor
}

TEST_CASE("a block's absmax is the plain loop's, NaNs not counted, at every length", "[numeric][blockwise8]") {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n <= 70; ++n) lengths.push_back(n); // every tail of the 4-, 8-, 32- and 64-value loops
    for (const std::size_t n : {127, 128, 129, 200, 255, 256, 257}) lengths.push_back(n);
    for (const std::size_t n : lengths)
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<float> x(n);
            for (auto& v : x) v = normal(rng);
            if (n > 0 && trial % 4 == 1) x[rng() % n] = nan;                  // a NaN anywhere, even the largest lane
            if (n > 0 && trial % 4 == 2) x[rng() % n] = -inf;
            if (trial % 4 == 3) std::fill(x.begin(), x.end(), trial % 8 == 3 ? -0.0f : nan);
            float plain = 0.0f;
            for (float v : x) plain = std::max(plain, std::fabs(v));
            CAPTURE(n, trial);
            REQUIRE(std::bit_cast<std::uint32_t>(block_absmax(x.data(), n)) == std::bit_cast<std::uint32_t>(plain));
#if CHILDTUNE_HAS_AVX2_DISPATCH
            // Each instruction set's loop on its own (block_absmax takes the widest).
            auto vector_part = [&](std::size_t done, float m) {
                for (std::size_t i = done; i < n; ++i) m = std::max(m, std::fabs(x[i]));
                return std::bit_cast<std::uint32_t>(m);
            };
            float m = 0.0f;
            if (cpu_supports(cpu_isa::avx2)) {
                const std::size_t done = absmax_avx2(x.data(), n, m);
                REQUIRE(vector_part(done, m) == std::bit_cast<std::uint32_t>(plain));
            }
            m = 0.0f;
            if (cpu_supports(cpu_isa::avx512)) {
                const std::size_t done = absmax_avx512(x.data(), n, m);
                REQUIRE(vector_part(done, m) == std::bit_cast<std::uint32_t>(plain));
            }
#endif
        }
}

#if CHILDTUNE_HAS_AVX2_DISPATCH
namespace {
//! One instruction set's vector loops.
struct vector_loops {
    const char* name;
    std::size_t width;
    std::size_t (*encode)(const dynamic_map_tables&, const float*, std::size_t, float, std::uint8_t*);
    std::size_t (*decode)(const dynamic_map_tables&, const std::uint8_t*, std::size_t, float, float*);
    bool (*available)();
};
//! The byte-table AVX-512 decoder, in the form the table of loops takes.
std::size_t decode_vbmi(const dynamic_map_tables& t, const std::uint8_t* codes, std::size_t n, float absmax, float* x) {
    return decode_block_avx512_vbmi(*t.cells, codes, n, absmax, x);
}
} // namespace
#endif

TEST_CASE("the AVX2 and AVX-512 encoders and decoders give the scalar codes and values bit for bit",
          "[numeric][blockwise8][avx2][avx512]") {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    // The VBMI encoder meets ties of its 15-bit remainders at the thresholds and
    // their neighbours below, so its fallback to the gather encoder runs too.
    const vector_loops loops[] = {
        {"AVX2", 8, encode_block_avx2, decode_block_avx2, cpu_has_avx2},
        {"AVX-512", 16, encode_block_avx512, decode_block_avx512, cpu_has_avx512},
        {"AVX-512 VBMI", 64, encode_block_avx512_vbmi, decode_vbmi, cpu_has_avx512vbmi2}};
    for (const vector_loops& loop : loops) {
        CAPTURE(loop.name);
        if (!loop.available()) {
            WARN("this CPU has no " << loop.name << ": its loops are not exercised");
            continue;
        }
        for (bool is_signed : {true, false}) {
            CAPTURE(is_signed);
            const dynamic_map& map = is_signed ? signed_dynamic_map() : unsigned_dynamic_map();
            std::vector<float> xs;
            // Every 257th float pattern, those in [-1, 1] (about 8 million), every
            // threshold and value with its float neighbours, zeros, NaNs.
            for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 257) {
                const float x = std::bit_cast<float>(static_cast<std::uint32_t>(u));
                if (std::fabs(x) <= 1.0f) xs.push_back(x);
            }
            for (const float v : map.values()) {
                for (const float x : {v, std::nextafter(v, 2.0f), std::nextafter(v, -2.0f)}) xs.push_back(x);
            }
            const auto& thresholds = map.thresholds();
            for (std::size_t c = 0; c < 255; ++c)
                for (const float x : {thresholds[c], std::nextafter(thresholds[c], 2.0f), std::nextafter(thresholds[c], -2.0f)})
                    xs.push_back(x);
            for (const float x : {0.0f, -0.0f, 1.0f, -1.0f, std::numeric_limits<float>::denorm_min(),
                                  -std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::quiet_NaN(),
                                  -std::numeric_limits<float>::quiet_NaN()})
                xs.push_back(x);
            while (xs.size() % loop.width != 3) xs.push_back(0.5f); // a ragged end for the scalar tail
            // Scale 1 encodes the patterns themselves; for the other scales the
            // patterns are first multiplied by 0.999 x the scale, so that every
            // quotient stays in [-1, 1] and the loops' division is compared too.
            for (const float absmax : {1.0f, 3.0f, 0.7f}) {
                CAPTURE(absmax);
                std::vector<std::uint8_t> codes(xs.size(), 0);
                std::vector<float> scaled(xs.size());
                for (std::size_t i = 0; i < xs.size(); ++i) scaled[i] = xs[i] * (absmax == 1.0f ? 1.0f : absmax * 0.999f);
                const std::size_t done = loop.encode(map.tables(), scaled.data(), scaled.size(), absmax, codes.data());
                REQUIRE(done == scaled.size() - 3);
                std::size_t mismatches = 0;
                for (std::size_t i = 0; i < done; ++i) {
                    const std::uint8_t expected = map.encode(scaled[i] / absmax);
                    if (codes[i] != expected && mismatches++ < 5) {
                        CAPTURE(i, scaled[i], int(codes[i]), int(expected));
                        CHECK(codes[i] == expected);
                    }
                }
                REQUIRE(mismatches == 0);
            }

            // Decoding every code with a few scales, against the scalar product.
            std::vector<std::uint8_t> all(256 * 3 + 5);
            for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i * 7);
            for (const float absmax : {1.0f, 3.0e-7f, 12345.678f, std::numeric_limits<float>::max()}) {
                std::vector<float> x(all.size(), -1.0f);
                const std::size_t decoded = loop.decode(map.tables(), all.data(), all.size(), absmax, x.data());
                REQUIRE(decoded == all.size() / loop.width * loop.width);
                for (std::size_t i = 0; i < decoded; ++i)
                    REQUIRE(std::bit_cast<std::uint32_t>(x[i]) == std::bit_cast<std::uint32_t>(map.values()[all[i]] * absmax));
            }
        }
    }
#else
    WARN("not an x86-64 build with AVX2 dispatch: nothing to compare");
#endif
}
