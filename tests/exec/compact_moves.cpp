// The compact Child-Tuning_D layout's AVX2 and AVX-512 expand and compress
// (exec/detail/compact_moves.hpp) against the scalar loops they replace (set bits
// visited one by one): every byte pattern in every byte of the word, random
// words, the empty and the full word; nothing written past the kept elements.
// (The whole compact step against the full layout is tests/exec/compact_step.cpp.)

#include <childtune/exec/detail/compact_moves.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/numeric/half.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

using namespace childtune::detail;

namespace {

#if CHILDTUNE_HAS_AVX2_DISPATCH
// The AVX2 helpers are inlined into AVX2 code: entries compiled for AVX2 call them.
__attribute__((target("avx2"))) std::size_t expand_avx2_entry(const float* kept, std::uint64_t bits, float* block) {
    return expand_word_avx2(kept, bits, block);
}
__attribute__((target("avx2"))) std::size_t compress_avx2_entry(const float* block, std::uint64_t bits, float* kept) {
    return compress_word_avx2(block, bits, kept);
}
// The AVX-512 ones through a single buffer (their buffer loop is checked by the
// compact step tests, which use two).
std::size_t expand_avx512_entry(const float* kept, std::uint64_t bits, float* block) {
    expand_words_avx512(&kept, 1, bits, block);
    return static_cast<std::size_t>(std::popcount(bits));
}
std::size_t compress_avx512_entry(const float* block, std::uint64_t bits, float* kept) {
    compress_words_avx512(block, 1, bits, &kept);
    return static_cast<std::size_t>(std::popcount(bits));
}

//! One instruction set's expand and compress.
struct moves {
    const char* name;
    cpu_isa isa;
    std::size_t (*expand)(const float*, std::uint64_t, float*);
    std::size_t (*compress)(const float*, std::uint64_t, float*);
};
#endif

//! The words checked: each byte value in each byte position (the rest random), random words, 0 and ~0.
std::vector<std::uint64_t> test_words() {
    std::mt19937_64 rng(11);
    std::vector<std::uint64_t> words = {0, ~std::uint64_t{0}, 1, std::uint64_t{1} << 63};
    for (unsigned c = 0; c < 8; ++c)
        for (std::uint64_t m = 0; m < 256; ++m) words.push_back((rng() & ~(std::uint64_t{0xff} << (8 * c))) | m << (8 * c));
    for (int i = 0; i < 2000; ++i) words.push_back(rng() & rng()); // sparser words too
    for (int i = 0; i < 2000; ++i) words.push_back(rng());
    return words;
}

} // namespace

TEST_CASE("the AVX2 and AVX-512 expand and compress of compact state move the scalar loops' values",
          "[exec][compact][avx2][avx512]") {
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const moves all[] = {{"AVX2", cpu_isa::avx2, expand_avx2_entry, compress_avx2_entry},
                         {"AVX-512", cpu_isa::avx512, expand_avx512_entry, compress_avx512_entry}};
    const auto words = test_words();
    for (const moves& m : all) {
        CAPTURE(m.name);
        if (!cpu_supports(m.isa)) {
            WARN("this CPU has no " << m.name << ": its moves are not exercised");
            continue;
        }
        std::mt19937 rng(5);
        std::normal_distribution<float> normal;
        const float guard = -12345.0f;
        for (const std::uint64_t bits : words) {
            CAPTURE(bits);
            const std::size_t count = static_cast<std::size_t>(std::popcount(bits));
            // Expand: the kept values followed by guards the expansion must not use.
            std::vector<float> kept(count + 16, guard);
            for (std::size_t k = 0; k < count; ++k) kept[k] = normal(rng);
            float expected[64], block[64];
            std::fill_n(expected, 64, 0.0f);
            std::size_t k = 0;
            for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1) expected[std::countr_zero(rest)] = kept[k++];
            std::fill_n(block, 64, guard);
            REQUIRE(m.expand(kept.data(), bits, block) == count);
            for (std::size_t i = 0; i < 64; ++i) {
                CAPTURE(i);
                REQUIRE(float_bits(block[i]) == float_bits(expected[i]));
            }

            // Compress a block of distinct values: the kept lanes in order, guards after them untouched.
            float source[64];
            for (auto& v : source) v = normal(rng);
            std::vector<float> out(count + 16, guard), want;
            for (std::uint64_t rest = bits; rest != 0; rest &= rest - 1) want.push_back(source[std::countr_zero(rest)]);
            REQUIRE(m.compress(source, bits, out.data()) == count);
            for (std::size_t i = 0; i < count; ++i) {
                CAPTURE(i);
                REQUIRE(float_bits(out[i]) == float_bits(want[i]));
            }
            for (std::size_t i = count; i < out.size(); ++i) REQUIRE(float_bits(out[i]) == float_bits(guard));
        }
    }
#else
    WARN("not an x86-64 build with AVX2 dispatch: nothing to compare");
#endif
}
