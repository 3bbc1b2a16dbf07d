#include <childtune/mask/mask_from.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "support/error_matcher.hpp"

using namespace childtune;

namespace {
using test_support::message_of;
} // namespace

TEST_CASE("mask from: bool, 0/1 integers and 0/1 floats give the same bits", "[mask][mask_from]") {
    // Elements 0, 2, 64 and 69 kept out of 70: words 0b101 and 0b100001 (hand-packed).
    std::vector<float> f(70, 0.0f);
    f[0] = f[2] = f[64] = f[69] = 1.0f;
    const bit_mask m = mask_from_values("w", f);
    REQUIRE(m.size() == 70);
    CHECK(m.words()[0] == 0b101u);
    CHECK(m.words()[1] == 0b100001u);
    CHECK(m.count() == 4);

    std::array<bool, 70> b{};
    b[0] = b[2] = b[64] = b[69] = true;
    CHECK(mask_from_values("w", b) == m);
    std::vector<std::uint8_t> u(70, 0);
    u[0] = u[2] = u[64] = u[69] = 1;
    CHECK(mask_from_values("w", u) == m);
    std::vector<double> d(f.begin(), f.end());
    d[1] = -0.0; // -0.0 is 0
    CHECK(mask_from_values("w", d) == m);
    std::vector<std::int64_t> i(70, 0);
    i[0] = i[2] = i[64] = i[69] = 1;
    CHECK(mask_from_values("w", i) == m);
    std::vector<bfloat16> h(70, bfloat16(0.0f));
    h[0] = h[2] = h[64] = h[69] = bfloat16(1.0f);
    CHECK(mask_from_values("w", h) == m);
    std::vector<bool> vb(b.begin(), b.end());
    CHECK(mask_from_values("w", vb) == m);
    CHECK(mask_from_values("empty", std::vector<float>{}).size() == 0);
}

TEST_CASE("mask from: a value other than 0 or 1 names the tensor, the element and the value", "[mask][mask_from][bad_input]") {
    std::vector<float> f(10, 1.0f);
    f[7] = 0.5f;
    CHECK(message_of([&] { (void)mask_from_values("layer.3.weight", f); }) ==
          "childtune: mask from values: tensor 'layer.3.weight', element 7 is 0.5; a mask holds only 0 (masked out) and 1 (kept)");
    f[7] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THAT(message_of([&] { (void)mask_from_values("t", f); }), Catch::Contains("element 7 is nan"));
    std::vector<int> i{0, 1, 2};
    CHECK_THAT(message_of([&] { (void)mask_from_values("t", i); }), Catch::Contains("element 2 is 2;"));
    std::vector<std::uint8_t> u{0, 255};
    CHECK_THAT(message_of([&] { (void)mask_from_values("t", u); }), Catch::Contains("element 1 is 255;"));
    std::vector<double> d{1.0, 1.0 + 1e-16 * 4};
    CHECK_THAT(message_of([&] { (void)mask_from_values("t", d); }), Catch::Contains("element 1 is 1.0000000000000004"));
    std::vector<float16> h{float16(-1.0f)};
    CHECK_THAT(message_of([&] { (void)mask_from_values("t", h); }), Catch::Contains("element 0 is -1;"));
}

TEST_CASE("mask from: packed 64-bit words and numpy packbits(bitorder='little') bytes", "[mask][mask_from]") {
    // Elements 0, 9 and 10 of 11: byte 0 = 0b00000001, byte 1 = 0b00000110; word 0b11000000001.
    const std::vector<std::uint8_t> bytes{0x01, 0x06};
    const bit_mask m = mask_from_packed_bytes("t", 11, bytes);
    CHECK(m.words()[0] == 0b11000000001u);
    const std::vector<std::uint64_t> words{0b11000000001u};
    CHECK(mask_from_words("t", 11, words) == m);
    // 72 elements: nine bytes spill into a second word.
    std::vector<std::uint8_t> nine(9, 0);
    nine[8] = 0x80; // element 71
    const bit_mask big = mask_from_packed_bytes("t", 72, nine);
    CHECK(big.count() == 1);
    CHECK(big.test(71));
    CHECK(big.words()[1] == 0x80u);
}

TEST_CASE("mask from: packed bits of the wrong length or with bits past the end are refused", "[mask][mask_from][bad_input]") {
    const std::vector<std::uint8_t> bytes{0x01, 0x06};
    CHECK(message_of([&] { (void)mask_from_packed_bytes("emb", 17, bytes); }) ==
          "childtune: mask from packed bits: tensor 'emb' has 17 elements, which need 3 bytes, but 2 were given");
    CHECK_THAT(message_of([&] { (void)mask_from_packed_bytes("emb", 10, bytes); }),
               Catch::Contains("tensor 'emb' has bits set past its 10 elements"));
    const std::vector<std::uint64_t> words{std::uint64_t{1} << 11};
    CHECK_THAT(message_of([&] { (void)mask_from_words("w", 11, words); }), Catch::Contains("bits set past its 11 elements"));
    CHECK_THAT(message_of([&] { (void)mask_from_words("w", 65, words); }),
               Catch::Contains("has 65 elements, which need 2 64-bit words, but 1 were given"));
}

TEST_CASE("mask from: a mask_set from named values keeps the order and refuses repeated names", "[mask][mask_from]") {
    using values = std::vector<float>;
    const mask_set s = mask_set_from_values<values>({{"a", values{1, 0, 1}}, {"b", values{0}}});
    REQUIRE(s.tensor_count() == 2);
    CHECK(s.entries()[0].name == "a");
    CHECK(s.entries()[0].mask.count() == 2);
    CHECK(s.entries()[1].mask.count() == 0);
    CHECK_THAT(message_of([&] { (void)mask_set_from_values<values>({{"a", values{1}}, {"a", values{1}}}); }),
               Catch::Contains("tensor 'a' added twice"));
    CHECK_THAT(message_of([&] { (void)mask_set_from_values<values>({{"a", values{1}}, {"b", values{3}}}); }),
               Catch::Contains("tensor 'b', element 0 is 3"));
}
