#include <childtune/random/philox.hpp>

#include <catch2/catch.hpp>

using childtune::philox4x32;
using childtune::philox_block;
using childtune::philox_key;

// Random123 kat_vectors, "philox4x32 10" lines: counter, key -> output.
TEST_CASE("Philox4x32-10 reproduces Random123's known-answer vectors", "[random][philox]") {
    CHECK(philox4x32({{0, 0, 0, 0}}, {{0, 0}}) == philox_block{{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
    CHECK(philox4x32({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}}) ==
          philox_block{{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
    CHECK(philox4x32({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}}) ==
          philox_block{{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST_CASE("Philox4x32-7 reproduces Random123's known-answer vector", "[random][philox]") {
    CHECK(philox4x32<7>({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}}) ==
          philox_block{{0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}});
}

TEST_CASE("Philox is usable in constant expressions", "[random][philox]") {
    constexpr auto b = philox4x32({{0, 0, 0, 0}}, {{0, 0}});
    static_assert(b.w[0] == 0x6627e8d5u);
    SUCCEED();
}
