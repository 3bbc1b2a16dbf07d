#include <childtune/io/binary.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using childtune::detail::binary_reader;
using childtune::detail::binary_writer;
using childtune::detail::checksum64;

TEST_CASE("checksum64 does not depend on how the bytes are split into updates", "[io]") {
    std::mt19937 rng(3);
    std::string bytes(1000, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    checksum64 whole;
    whole.update(bytes.data(), bytes.size());
    for (std::size_t piece : {1u, 3u, 7u, 8u, 9u, 64u, 333u}) {
        checksum64 parts;
        for (std::size_t at = 0; at < bytes.size(); at += piece)
            parts.update(bytes.data() + at, std::min(piece, bytes.size() - at));
        REQUIRE(parts.value() == whole.value());
    }
    checksum64 flipped;
    bytes[500] = static_cast<char>(bytes[500] ^ 4);
    flipped.update(bytes.data(), bytes.size());
    CHECK(flipped.value() != whole.value());
    CHECK(checksum64{}.value() == 0xcbf29ce484222325ull); // FNV-1a offset basis
}

TEST_CASE("binary streams round-trip values, strings and arrays little-endian", "[io]") {
    std::stringstream s;
    binary_writer w(s);
    w.header("TESTFMT\1", 3);
    w.value<std::uint32_t>(0x01020304u);
    w.value<double>(-2.5);
    w.string("layer.0.weight");
    const std::vector<float> floats = {1.0f, -0.0f, 3.25f};
    w.array(std::span<const float>(floats));
    w.finish();

    const std::string bytes = s.str();
    CHECK(bytes.substr(0, 8) == "TESTFMT\1");
    CHECK(static_cast<unsigned char>(bytes[12]) == 0x04); // little-endian on disk

    std::stringstream in(bytes);
    binary_reader r(in, "test file");
    r.header("TESTFMT\1", 3);
    CHECK(r.value<std::uint32_t>() == 0x01020304u);
    CHECK(r.value<double>() == -2.5);
    CHECK(r.string() == "layer.0.weight");
    std::vector<float> back(3);
    r.array_into(std::span<float>(back));
    CHECK(back == floats);
    CHECK_NOTHROW(r.finish());
}

TEST_CASE("binary readers reject wrong headers, long names and forged counts", "[io]") {
    std::stringstream s;
    binary_writer w(s);
    w.header("TESTFMT\1", 3);
    w.value<std::uint64_t>(std::uint64_t{1} << 40); // a string length far beyond the cap
    w.finish();
    {
        std::stringstream in(s.str());
        binary_reader r(in, "test file");
        CHECK_THROWS_WITH(r.header("OTHERFMT", 3), Catch::Contains("bad magic"));
    }
    {
        std::stringstream in(s.str());
        binary_reader r(in, "test file");
        CHECK_THROWS_WITH(r.header("TESTFMT\1", 4), Catch::Contains("version 3 is not supported (expected 4)"));
    }
    {
        std::stringstream in(s.str());
        binary_reader r(in, "test file");
        r.header("TESTFMT\1", 3);
        CHECK_THROWS_WITH(r.string(), Catch::Contains("a name of 1099511627776 bytes"));
    }
    {
        std::stringstream in(s.str());
        binary_reader r(in, "test file");
        r.header("TESTFMT\1", 3);
        CHECK_THROWS_WITH(r.array_untrusted<std::uint64_t>(r.value<std::uint64_t>()), Catch::Contains("truncated"));
    }
}

TEST_CASE("binary writers report a failing stream", "[io]") {
    std::stringstream s;
    s.setstate(std::ios::badbit);
    binary_writer w(s);
    CHECK_THROWS_WITH(w.value<std::uint32_t>(1), Catch::Contains("writing failed"));
}

TEST_CASE("binary readers: finish_file() requires the stream to end at the checksum, finish() does not", "[io]") {
    std::stringstream s;
    binary_writer w(s);
    w.header("TESTFMT\1", 1);
    w.value<std::uint32_t>(7);
    w.finish();
    const std::string file = s.str();
    const auto read = [](const std::string& bytes, bool whole_file) {
        std::stringstream in(bytes);
        binary_reader r(in, "test file");
        r.header("TESTFMT\1", 1);
        CHECK(r.value<std::uint32_t>() == 7);
        if (whole_file)
            r.finish_file();
        else
            r.finish();
    };
    read(file, true);
    // A header followed by another record in the same stream (the sharded
    // optimizer's files) is read with finish().
    read(file + "next record", false);
    CHECK_THROWS_WITH(read(file + "x", true), Catch::Contains("test file is corrupt: 1 byte follows its checksum"));
    CHECK_THROWS_WITH(read(file + std::string(4096, '\0'), true),
                      Catch::Contains("test file is corrupt: 4096 bytes follow its checksum"));
}
