#include <childtune/random/ars.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#endif

using childtune::ars4x32;
using childtune::philox_block;

// Random123 kat_vectors, "ars4x32 10" lines: counter, key -> output.
TEST_CASE("ARS-10 reproduces Random123's known-answer vectors", "[random][ars]") {
    CHECK(ars4x32<10>({{0, 0, 0, 0}}, {{0, 0, 0, 0}}) == philox_block{{0x8d73ee19, 0x506401ef, 0x13c2dbe4, 0x0cbe9c0d}});
    CHECK(ars4x32<10>({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0, 0x082efa98, 0xec4e6c89}}) ==
          philox_block{{0xa516e7d6, 0x8357ad74, 0x5b59b3ec, 0x8763fff3}});
    CHECK(ars4x32<10>({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff, 0, 0}}) ==
          philox_block{{0xbb3743b1, 0x9f635551, 0xecbc87fc, 0xa19478a9}});
}

namespace {
// FIPS-197 key expansion for AES-128, written from the standard in terms of the
// library's S-box: with the round below it is AES-128 encryption.
philox_block aes128_encrypt(philox_block plain, const std::uint8_t (&key)[16]) {
    const auto& sbox = childtune::detail::aes_host_tables.sbox;
    std::uint32_t w[44];
    for (int i = 0; i < 4; ++i)
        w[i] = std::uint32_t{key[4 * i]} | std::uint32_t{key[4 * i + 1]} << 8 | std::uint32_t{key[4 * i + 2]} << 16 |
               std::uint32_t{key[4 * i + 3]} << 24;
    std::uint32_t rcon = 1;
    for (int i = 4; i < 44; ++i) {
        std::uint32_t t = w[i - 1];
        if (i % 4 == 0) {
            t = (t >> 8) | (t << 24); // RotWord on little-endian words
            t = std::uint32_t{sbox[t & 0xFF]} | std::uint32_t{sbox[(t >> 8) & 0xFF]} << 8 |
                std::uint32_t{sbox[(t >> 16) & 0xFF]} << 16 | std::uint32_t{sbox[t >> 24]} << 24;
            t ^= rcon;
            rcon = childtune::detail::aes_xtime(static_cast<std::uint8_t>(rcon));
        }
        w[i] = w[i - 4] ^ t;
    }
    philox_block s{{plain.w[0] ^ w[0], plain.w[1] ^ w[1], plain.w[2] ^ w[2], plain.w[3] ^ w[3]}};
    for (int r = 1; r <= 10; ++r)
        s = childtune::detail::aes_round(s, {{w[4 * r], w[4 * r + 1], w[4 * r + 2], w[4 * r + 3]}}, r == 10);
    return s;
}
philox_block from_bytes(const std::uint8_t (&b)[16]) {
    philox_block x{};
    for (int i = 0; i < 16; ++i) x.w[i / 4] |= std::uint32_t{b[i]} << (8 * (i % 4));
    return x;
}
} // namespace

// FIPS-197 appendix C.1: the round and the S-box are AES's.
TEST_CASE("The AES round under ARS encrypts FIPS-197's AES-128 example", "[random][ars]") {
    const std::uint8_t plain[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    const std::uint8_t key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    const std::uint8_t cipher[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
    CHECK(aes128_encrypt(from_bytes(plain), key) == from_bytes(cipher));
    CHECK(childtune::detail::aes_host_tables.sbox[0x00] == 0x63);
    CHECK(childtune::detail::aes_host_tables.sbox[0x53] == 0xed); // FIPS-197 section 5.1.1's example
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
namespace {
__attribute__((target("aes"))) philox_block aesni_round(philox_block s, philox_block key, bool last) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.w));
    const __m128i k = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key.w));
    philox_block out;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.w), last ? _mm_aesenclast_si128(x, k) : _mm_aesenc_si128(x, k));
    return out;
}
} // namespace

TEST_CASE("The scalar AES round gives aesenc's and aesenclast's bits", "[random][ars]") {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 25)) == 0) {
        WARN("this CPU has no AES-NI: nothing to compare with");
        return;
    }
    std::uint64_t x = 0x243F6A8885A308D3ull;
    const auto next = [&x] { // splitmix64: inputs with every byte value
        x += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return static_cast<std::uint32_t>(z ^ (z >> 31));
    };
    for (int i = 0; i < 20000; ++i) {
        const philox_block s{{next(), next(), next(), next()}}, k{{next(), next(), next(), next()}};
        REQUIRE(childtune::detail::aes_round(s, k, false) == aesni_round(s, k, false));
        REQUIRE(childtune::detail::aes_round(s, k, true) == aesni_round(s, k, true));
    }
}
#endif
