#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "support/error_matcher.hpp"

using namespace childtune;

#ifndef CHILDTUNE_TEST_DATA_DIR
#error "CHILDTUNE_TEST_DATA_DIR must name tests/data"
#endif

namespace {
using test_support::message_of;
// The set of tests/data/masks/golden_v1.ctmask (docs/guides/mask-files.md reads it from Python).
mask_set golden_set() {
    bit_mask w(70), b(5);
    for (std::size_t i = 0; i < 70; i += 3) w.set(i);
    b.set(1);
    b.set(4);
    mask_set s;
    s.add("encoder.layer.0.weight", w);
    s.add("head.bias", b);
    s.add("empty", bit_mask(0));
    return s;
}
std::string golden_path() { return std::string(CHILDTUNE_TEST_DATA_DIR) + "/masks/golden_v1.ctmask"; }
std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
std::uint64_t le64(const std::string& s, std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
    return v;
}
} // namespace

TEST_CASE("mask file: save() writes exactly the committed golden file, byte by byte as documented", "[mask][mask_file]") {
    std::ostringstream out;
    golden_set().save(out);
    const std::string bytes = out.str(), golden = read_all(golden_path());
    CHECK(bytes == golden); // the format cannot drift without this test (and old files) noticing
    REQUIRE(bytes.size() == 136); // 20 + (8+22+8+16) + (8+9+8+8) + (8+5+8+0) + 8
    CHECK(bytes.substr(0, 8) == std::string("CTMASK\0\1", 8));
    CHECK(bytes.substr(8, 4) == std::string("\1\0\0\0", 4)); // version 1, u32 LE
    CHECK(le64(bytes, 12) == 3);                               // tensor count
    CHECK(le64(bytes, 20) == 22);                              // name length
    CHECK(bytes.substr(28, 22) == "encoder.layer.0.weight");
    CHECK(le64(bytes, 50) == 70);                              // size
    CHECK(le64(bytes, 58) == 0x9249249249249249ull);           // elements 0, 3, ..., 63
    CHECK(le64(bytes, 66) == 0b100100u);                        // elements 66, 69
    CHECK(le64(bytes, 74) == 9);
    CHECK(le64(bytes, 91) == 5);
    CHECK(le64(bytes, 99) == 0b10010u);
    CHECK(le64(bytes, 107) == 5);
    CHECK(le64(bytes, 120) == 0);
    // The checksum: FNV-1a over 8-byte little-endian words, then single bytes (a naive transcription).
    std::uint64_t h = 0xcbf29ce484222325ull;
    const std::size_t body = bytes.size() - 8;
    std::size_t i = 0;
    for (; i + 8 <= body; i += 8) h = (h ^ le64(bytes, i)) * 0x100000001b3ull;
    for (; i < body; ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ull;
    CHECK(le64(bytes, body) == h);

    std::istringstream in(golden);
    CHECK(mask_set::load(in) == golden_set());
    std::string damaged = golden;
    damaged[60] = static_cast<char>(damaged[60] ^ 1);
    CHECK(message_of([&] { std::istringstream d(damaged); (void)mask_set::load(d); }) ==
          "childtune: mask file is corrupt: the byte at offset 60 of 136 was changed after it was written (checksum mismatch)");
}

TEST_CASE("mask file: save and load by path round-trip, and a missing file names its path", "[mask][mask_file]") {
    const auto path = (std::filesystem::temp_directory_path() / "childtune_mask_file_test.ctmask").string();
    golden_set().save(path);
    CHECK(mask_set::load(path) == golden_set());
    std::filesystem::remove(path);
    CHECK(message_of([&] { (void)mask_set::load(path); }) == "childtune: cannot open mask file '" + path + "'");
}

TEST_CASE("mask file: a mask file for a model with other names or sizes is refused naming the tensor",
          "[mask][mask_file][bad_input]") {
    const mask_set file = mask_set::load(golden_path());
    sgd::options o;
    o.lr = 0.5;
    std::vector<float> w(70, 0.0f), gw(70, 1.0f), b(5, 0.0f), gb(5, 1.0f);
    std::span<float> empty_param;
    std::span<const float> empty_grad;
    {   // the model the file was made for: steps, keeping exactly the file's elements
        optimizer<sgd> opt(dense{});
        const auto g = opt.add_group("enc", o);
        opt.add_parameter(g, "encoder.layer.0.weight", w, gw);
        opt.add_parameter(g, "head.bias", b, gb);
        opt.add_parameter(g, "empty", empty_param, empty_grad);
        opt.set_mask(fixed{file});
        REQUIRE(opt.step());
        for (std::size_t i = 0; i < 70; ++i) CHECK(w[i] == (i % 3 == 0 ? -0.5f : 0.0f));
        CHECK(b == std::vector<float>{0, -0.5f, 0, 0, -0.5f});
    }
    {   // a size differs
        std::vector<float> w69(69, 0.0f), g69(69, 1.0f);
        optimizer<sgd> opt(dense{});
        const auto g = opt.add_group("enc", o);
        opt.add_parameter(g, "encoder.layer.0.weight", w69, g69);
        CHECK(message_of([&] { opt.set_mask(fixed{file}); }) ==
              "childtune: fixed mask: mask of tensor 'encoder.layer.0.weight' has 70 elements, the tensor has 69");
    }
    {   // a name differs (the model was renamed): no mask for the new name
        optimizer<sgd> opt(dense{});
        const auto g = opt.add_group("enc", o);
        opt.add_parameter(g, "bert.encoder.layer.0.weight", w, gw);
        CHECK_THAT(message_of([&] { opt.set_mask(fixed{file}); }),
                   Catch::Contains("fixed mask: no mask for tensor 'bert.encoder.layer.0.weight'"));
    }
    {   // the file holds a tensor the model does not have: refused at the step, nothing changed
        optimizer<sgd> opt(dense{});
        const auto g = opt.add_group("enc", o);
        opt.add_parameter(g, "encoder.layer.0.weight", w, gw);
        opt.add_parameter(g, "empty", empty_param, empty_grad);
        opt.set_mask(fixed{file});
        const auto before = w;
        CHECK_THAT(message_of([&] { (void)opt.step(); }), Catch::Contains("fixed mask: tensor 'head.bias' is not registered"));
        CHECK(w == before);
        CHECK(opt.step_count() == 0);
    }
}
