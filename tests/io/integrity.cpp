#include <childtune/io/integrity.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <sstream>
#include <streambuf>
#include <string>

using childtune::detail::binary_reader;
using childtune::detail::binary_writer;
using childtune::detail::verified_input;

namespace {

constexpr std::string_view magic{"TESTFMT\1", 8};

std::string sample_file(std::size_t payload) {
    std::mt19937 rng(9);
    std::stringstream s;
    binary_writer w(s);
    w.header(magic, 1);
    for (std::size_t i = 0; i < payload; ++i) w.value<std::uint8_t>(static_cast<std::uint8_t>(rng()));
    w.finish();
    return s.str();
}

//! A stream that cannot seek (a pipe): verified_input reads it into memory.
struct pipe_buffer : std::streambuf {
    explicit pipe_buffer(std::string& bytes) { setg(bytes.data(), bytes.data(), bytes.data() + bytes.size()); }
};

std::string message_of(const std::string& bytes, bool seekable) {
    std::string copy = bytes;
    pipe_buffer pipe(copy);
    std::istream unseekable(&pipe);
    std::stringstream seekable_in(bytes);
    std::istream& in = seekable ? static_cast<std::istream&>(seekable_in) : unseekable;
    try {
        verified_input v(in, "test file", magic);
        binary_reader r(v.stream(), "test file");
        r.header(magic, 1);
        std::string rest(bytes.size() - 12 - 8, '\0');
        r.bytes(rest.data(), rest.size());
        r.finish();
        return "";
    } catch (const childtune::error& e) {
        return e.what();
    }
}

} // namespace

TEST_CASE("integrity: every flipped byte, checksum included, is reported with its offset before parsing", "[io]") {
    // Sizes whose tails end mid-word and on a word.
    for (const std::size_t payload : {std::size_t{0}, std::size_t{5}, std::size_t{12}, std::size_t{301}}) {
        const std::string good = sample_file(payload);
        CHECK(message_of(good, true).empty());
        CHECK(message_of(good, false).empty());
        const std::size_t length = good.size() - 8;
        for (std::size_t at = 0; at < good.size(); ++at)
            for (const int flip : {0x01, 0x80, 0xff}) {
                std::string bad = good;
                bad[at] = static_cast<char>(bad[at] ^ flip);
                INFO("payload " << payload << ", offset " << at << ", flip " << flip);
                // The changed byte is always among the candidates; it is the only
                // one unless it is one of a word's top three bytes (FNV-1a carries a
                // change only upwards), which the checksum may not tell apart.
                const auto candidates = childtune::detail::damaged_byte_candidates(bad);
                REQUIRE(std::find(candidates.begin(), candidates.end(), at) != candidates.end());
                const bool in_word = at < length - length % 8 || at >= length;
                const std::size_t byte = at >= length ? at - length : at % 8;
                const std::string want = "test file is corrupt: the byte at offset " + std::to_string(at) + " of " +
                                         std::to_string(good.size()) + " was changed";
                if (!in_word || byte < 5) {
                    REQUIRE(candidates.size() == 1);
                    REQUIRE_THAT(message_of(bad, true), Catch::Contains(want));
                    REQUIRE_THAT(message_of(bad, at % 5 == 0), Catch::Contains(want));
                } else {
                    REQUIRE_THAT(message_of(bad, at % 5 == 0), Catch::Contains("test file is corrupt"));
                }
            }
    }
}

TEST_CASE("integrity: truncated files, foreign files and damage in two places are named as such", "[io]") {
    const std::string good = sample_file(100);
    for (std::size_t cut = 0; cut < good.size(); ++cut) {
        INFO("cut at " << cut);
        REQUIRE_THAT(message_of(good.substr(0, cut), cut % 2 == 0), Catch::Contains("truncated"));
    }
    CHECK_THAT(message_of(std::string(200, 'x'), true), Catch::Contains("bad magic"));
    std::string twice = good;
    twice[20] = static_cast<char>(twice[20] ^ 1);
    twice[60] = static_cast<char>(twice[60] ^ 1);
    CHECK_THAT(message_of(twice, true), Catch::Contains("truncated or corrupt") && Catch::Contains("more than one byte"));
    // Bytes after the file belong to it (it is read to the end): one appended byte is damage.
    CHECK_THAT(message_of(good + "z", true), Catch::Contains("corrupt"));
}
