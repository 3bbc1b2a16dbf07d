#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/file_surgery.hpp"

using childtune::bit_mask;
using childtune::mask_set;

namespace {
bit_mask random_mask(std::size_t n, double p, unsigned seed) {
    std::mt19937 rng(seed);
    std::bernoulli_distribution keep(p);
    bit_mask m(n);
    for (std::size_t i = 0; i < n; ++i) m.set(i, keep(rng));
    return m;
}
mask_set sample_set() {
    mask_set s;
    s.add("layer.0.weight", random_mask(1000, 0.3, 1));
    s.add("layer.0.bias", random_mask(7, 0.5, 2));
    s.add("empty", bit_mask(0));
    return s;
}
} // namespace

TEST_CASE("bit_mask packs one bit per element, least significant first", "[mask][bit_mask]") {
    bit_mask m(130);
    m.set(0);
    m.set(64);
    m.set(129);
    CHECK(m.words().size() == 3);
    CHECK(m.words()[0] == 1u);
    CHECK(m.words()[1] == 1u);
    CHECK(m.words()[2] == 2u);
    CHECK(m.count() == 3);
    m.set(64, false);
    CHECK(!m.test(64));
    CHECK(bit_mask(70, true).count() == 70); // padding bits stay clear
    CHECK(bit_mask(70, true).words()[1] == 0x3Fu);
    CHECK_THROWS_WITH(bit_mask(65, std::vector<std::uint64_t>{1}), Catch::Contains("cannot hold"));
}

TEST_CASE("fixed_view bit words equal single-bit reads at every offset", "[mask][fixed]") {
    const auto m = random_mask(300, 0.5, 9);
    for (std::uint64_t offset : {0u, 1u, 63u, 64u, 65u}) {
        const childtune::fixed_view v(m, offset);
        for (std::uint64_t first = 0; first + offset < 300; ++first) {
            const auto bits = v.bits64(first);
            for (unsigned j = 0; j < 64 && first + offset + j < 300; ++j)
                REQUIRE(((bits >> j) & 1u) == static_cast<unsigned>(m.test(first + offset + j)));
        }
    }
    CHECK(childtune::fixed_view(m).bits64(1000) == 0);
}

TEST_CASE("fixed_view keep_octet gives keep() of elements i + 16k, 0 past the mask's end, reading no word past it",
          "[mask][fixed]") {
    for (const std::size_t size : {1u, 64u, 130u, 300u}) {
        const auto m = random_mask(size, 0.5, 11);
        for (std::uint64_t offset : {0u, 1u, 16u, 63u, 64u, 65u}) {
            if (offset >= size) continue;
            const childtune::fixed_view v(m, offset);
            for (std::uint64_t i = 0; i + offset < size; ++i) {
                unsigned expected = 0;
                for (unsigned k = 0; k < 8 && i + offset + 16 * k < size; ++k)
                    expected |= static_cast<unsigned>(v.keep(i + 16 * k)) << k;
                INFO("size " << size << ", offset " << offset << ", i " << i);
                REQUIRE(v.keep_octet(i) == expected);
            }
        }
    }
}

TEST_CASE("fixed policy finds masks by name and checks their size", "[mask][fixed]") {
    const childtune::fixed f{sample_set()};
    CHECK_NOTHROW(f.view("layer.0.bias", 7));
    CHECK_THROWS_WITH(f.view("layer.1.bias", 7), Catch::Contains("'layer.1.bias'") && Catch::Contains("different parameter set"));
    CHECK_THROWS_WITH(f.view("layer.0.bias", 8), Catch::Contains("'layer.0.bias'") && Catch::Contains("has 7 elements"));
}

TEST_CASE("mask_set summary reports per-tensor kept fractions", "[mask][mask_set]") {
    const auto s = sample_set();
    const auto summary = s.summary();
    REQUIRE(summary.size() == 3);
    CHECK(summary[0].name == "layer.0.weight");
    CHECK(summary[0].kept == s.find("layer.0.weight")->count());
    CHECK(summary[0].kept_fraction() == Approx(0.3).margin(0.05));
    CHECK(summary[2].kept_fraction() == 0.0);
    CHECK(s.total_size() == 1007);
    mask_set dup;
    dup.add("a", bit_mask(1));
    CHECK_THROWS_WITH(dup.add("a", bit_mask(1)), Catch::Contains("'a' added twice"));
}

TEST_CASE("mask_set save/load round-trips and rejects damaged files", "[mask][mask_set]") {
    const auto s = sample_set();
    std::stringstream out;
    s.save(out);
    const std::string bytes = out.str();
    {
        std::stringstream in(bytes);
        CHECK(mask_set::load(in) == s);
    }
    SECTION("every truncation is reported") {
        for (std::size_t cut = 0; cut < bytes.size(); cut += 7) {
            std::stringstream in(bytes.substr(0, cut));
            REQUIRE_THROWS_WITH(mask_set::load(in), Catch::Contains("truncated") || Catch::Contains("bad magic"));
        }
    }
    SECTION("a flipped byte is caught, with its offset") {
        for (std::size_t at = 0; at < bytes.size(); at += 11) {
            std::string damaged = bytes;
            damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
            std::stringstream in(damaged);
            // Exact but for a word's top three bytes (io/integrity.hpp).
            const std::size_t length = bytes.size() - 8;
            if ((at >= length ? at - length : at < length - length % 8 ? at % 8 : 0) < 5)
                REQUIRE_THROWS_WITH(mask_set::load(in), Catch::Contains("mask file is corrupt: the byte at offset " +
                                                                        std::to_string(at) + " of"));
            else
                REQUIRE_THROWS_WITH(mask_set::load(in), Catch::Contains("mask file is corrupt"));
        }
    }
    SECTION("a foreign file is named as such") {
        std::stringstream in(std::string("PK\3\4 this is a zip file, not a mask"));
        CHECK_THROWS_WITH(mask_set::load(in), Catch::Contains("bad magic"));
    }
    SECTION("a newer format version is refused") {
        // A newer library's file (its checksum intact: an unfixed one is a
        // damaged byte, reported with its offset).
        std::string newer = bytes;
        newer[8] = 2;
        std::stringstream in(test_support::with_checksum_recomputed(newer));
        CHECK_THROWS_WITH(mask_set::load(in), Catch::Contains("version 2 is not supported"));
    }
    SECTION("bytes after the checksum are refused, even under a checksum recomputed over all of them") {
        for (const std::string& extra : {std::string("CTMASK\0\1"), std::string(1, '\0'), std::string(100, 'x')}) {
            std::stringstream in(test_support::with_bytes_after_checksum(bytes, extra));
            REQUIRE_THROWS_WITH(mask_set::load(in), Catch::Contains("mask file is corrupt: " + std::to_string(extra.size() + 8) +
                                                                    " bytes follow its checksum"));
        }
    }
    SECTION("a forged huge length fails without allocating") {
        std::string forged = bytes.substr(0, 12 + 8); // header + count
        const std::string name = "x";
        std::uint64_t len = name.size();
        forged.append(reinterpret_cast<const char*>(&len), 8).append(name);
        std::uint64_t size = std::uint64_t{1} << 55;
        forged.append(reinterpret_cast<const char*>(&size), 8);
        std::stringstream in(forged);
        CHECK_THROWS_WITH(mask_set::load(in), Catch::Contains("truncated"));
    }
}

TEST_CASE("bad input: bit masks whose word count would wrap, and masks of the wrong size", "[mask][bit_mask][bad_input]") {
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    // ceil(n/64) for n near SIZE_MAX used to wrap to 0 words, so a mask of 2^64 - 1
    // elements without storage was accepted.
    CHECK(bit_mask::word_count(max) == max / 64 + 1);
    CHECK(bit_mask::word_count(max - 62) == max / 64 + 1);
    CHECK(bit_mask::word_count(64) == 1);
    CHECK(bit_mask::word_count(65) == 2);
    CHECK(bit_mask::word_count(0) == 0);
    for (const std::size_t n : {max, max - 62, max - 63})
        CHECK_THROWS_WITH(bit_mask(n, std::vector<std::uint64_t>{}), Catch::Contains("0 words cannot hold"));
    CHECK_THROWS_WITH(bit_mask(64, std::vector<std::uint64_t>{}), Catch::Contains("0 words cannot hold 64 bits"));
    CHECK_THROWS_WITH(bit_mask(0, std::vector<std::uint64_t>{0}), Catch::Contains("1 words cannot hold 0 bits"));

    // A fixed mask of the wrong size or under the wrong name; nothing in the set changes.
    mask_set s = sample_set();
    const mask_set before = s;
    childtune::fixed f{s};
    CHECK_THROWS_WITH(f.view("layer.0.weight", 999), Catch::Contains("has 1000 elements, the tensor has 999"));
    CHECK_THROWS_WITH(f.view("layer.0.weight", max), Catch::Contains("the tensor has " + std::to_string(max)));
    CHECK_THROWS_WITH(f.view("Layer.0.weight", 1000), Catch::Contains("no mask for tensor 'Layer.0.weight'"));
    CHECK_THROWS_WITH(s.add("", bit_mask(1)), Catch::Contains("name must not be empty"));
    CHECK_THROWS_WITH(s.add("empty", bit_mask(3)), Catch::Contains("'empty' added twice"));
    CHECK(s == before);
}
