#pragma once
//! \file
//! Checking a checksummed file (io/binary.hpp: the bytes, then the checksum of
//! all of them) before any of it is parsed.
//!
//! A parser that meets a damaged byte reports whatever that byte breaks: a
//! flipped bit in a tensor's size reads as "the file has another parameter
//! set", one in a name as "tensor 'x' found where 'y' was expected". Checked
//! first, damage is reported as what it is, with its offset: checksum64 is
//! invertible word by word (x ↦ (h ^ x)·prime is a bijection), so hashing
//! forward from the start and backward from the stored checksum meets at the
//! one damaged word, and the damaged byte is where the two disagree.

#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <istream>
#include <iterator>
#include <optional>
#include <streambuf>
#include <string>
#include <string_view>
#include <vector>

namespace childtune::detail {

//! Where a single changed byte of `data` (its last 8 bytes are the stored
//! checksum) can be: every offset at which changing one byte explains the
//! checksum, in increasing order; empty when no single byte does (damage in
//! several places, a cut). One offset for most bytes; a change in the top bytes
//! of a word can leave several (FNV-1a carries a change only into higher bits,
//! so the checksum cannot always tell which word's top byte it was).
inline std::vector<std::uint64_t> damaged_byte_candidates(const std::string& data) {
    constexpr std::uint64_t prime = 0x100000001b3ull;
    std::uint64_t inverse = prime; // Newton's iteration for prime⁻¹ mod 2^64
    for (int i = 0; i < 6; ++i) inverse *= 2 - prime * inverse;
    const std::size_t length = data.size() - 8;
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t words = length / 8, units = words + length % 8;
    // Unit u: word u (bytes 8u..8u+7, little-endian) or, past the words, one byte.
    const auto unit = [&](std::size_t u) {
        if (u >= words) return std::uint64_t{p[words * 8 + (u - words)]};
        std::uint64_t w = 0;
        for (int i = 7; i >= 0; --i) w = (w << 8) | p[u * 8 + static_cast<std::size_t>(i)];
        return w;
    };
    const auto offset_of = [&](std::size_t u) { return u < words ? u * 8 : words * 8 + (u - words); };
    const auto single_byte = [](std::uint64_t d) -> std::optional<unsigned> {
        for (unsigned b = 0; b < 8; ++b)
            if (d != 0 && d == (d & (std::uint64_t{0xff} << (8 * b)))) return b;
        return std::nullopt;
    };
    std::uint64_t stored = 0;
    for (int i = 7; i >= 0; --i) stored = (stored << 8) | p[length + static_cast<std::size_t>(i)];
    // Backward states: before[u] is the hash state before unit u if units u.. are intact.
    std::vector<std::uint64_t> before(units + 1);
    before[units] = stored;
    for (std::size_t u = units; u-- > 0;) before[u] = (before[u + 1] * inverse) ^ unit(u);
    std::vector<std::uint64_t> found;
    std::uint64_t forward = checksum64{}.value();
    for (std::size_t u = 0; u < units; ++u) {
        const std::uint64_t x = unit(u), original = (before[u + 1] * inverse) ^ forward;
        if (const auto b = single_byte(original ^ x); b && (u < words || original < 256)) found.push_back(offset_of(u) + *b);
        forward = (forward ^ x) * prime;
    }
    if (const auto b = single_byte(forward ^ stored)) found.push_back(length + *b); // the checksum itself
    return found;
}

//! Reads a checksummed file from the current position of `in` to its end and
//! verifies the checksum before anything is parsed; parse from stream()
//! afterwards (`in` itself, rewound, when it can seek; else a copy in memory).
//! A file with an intact checksum but a foreign magic or an unknown version is
//! left to the parser, which names it as such. The price is one more pass over
//! the file (at memory or disk speed), paid so that no parser sees damaged bytes.
class verified_input {
public:
    verified_input(std::istream& in, const std::string& what, std::string_view magic) : in_(&in) {
        const std::istream::pos_type start = in.tellg();
        if (start != std::istream::pos_type(-1) && in.seekg(0, std::ios::end)) {
            const auto length = static_cast<std::uint64_t>(in.tellg() - start);
            in.seekg(start);
            if (length < magic.size() + 4 + 8) fail(what + " is truncated (" + std::to_string(length) + " bytes)");
            checksum64 sum;
            std::vector<char> chunk(1 << 20);
            for (std::uint64_t left = length - 8; left > 0;) {
                const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
                if (!in.read(chunk.data(), static_cast<std::streamsize>(n))) fail(what + " could not be read");
                sum.update(chunk.data(), n);
                left -= n;
            }
            std::uint64_t stored = 0;
            if (!in.read(reinterpret_cast<char*>(&stored), sizeof stored)) fail(what + " could not be read");
            if (byteswap_if_big(stored) != sum.value()) {
                if (length > locate_limit)
                    fail(what + " is truncated or corrupt: the checksum of its first " + std::to_string(length - 8) +
                         " bytes does not match the one stored after them");
                in.seekg(start);
                copy_.resize(static_cast<std::size_t>(length));
                in.read(copy_.data(), static_cast<std::streamsize>(copy_.size()));
                report(what, magic);
            }
            in.clear();
            in.seekg(start);
            return;
        }
        in.clear();
        copy_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (copy_.size() < magic.size() + 4 + 8) fail(what + " is truncated (" + std::to_string(copy_.size()) + " bytes)");
        checksum64 sum;
        sum.update(copy_.data(), copy_.size() - 8);
        std::uint64_t stored = 0;
        std::memcpy(&stored, copy_.data() + copy_.size() - 8, 8);
        if (byteswap_if_big(stored) != sum.value()) report(what, magic);
        buffer_.setg(copy_.data(), copy_.data(), copy_.data() + copy_.size());
        memory_.emplace(&buffer_);
        in_ = &*memory_;
    }
    verified_input(const verified_input&) = delete;
    verified_input& operator=(const verified_input&) = delete;

    std::istream& stream() { return *in_; }

private:
    //! Damage in files up to this size is located (the search holds 8 bytes per 8).
    static constexpr std::uint64_t locate_limit = std::uint64_t{1} << 30;

    struct memory_buffer : std::streambuf {
        void setg(char* b, char* c, char* e) { std::streambuf::setg(b, c, e); }
    };

    //! The checksum disagrees with copy_: say where, or why not.
    [[noreturn]] void report(const std::string& what, std::string_view magic) const {
        const std::string length = std::to_string(copy_.size() - 8);
        const auto at = damaged_byte_candidates(copy_);
        const std::string size = std::to_string(copy_.size());
        if (at.size() == 1)
            fail(what + " is corrupt: the byte at offset " + std::to_string(at[0]) + " of " + size +
                 " was changed after it was written (checksum mismatch)");
        if (!at.empty()) {
            std::string list;
            for (std::size_t i = 0; i < at.size() && i < 8; ++i) list += (i ? ", " : "") + std::to_string(at[i]);
            fail(what + " is corrupt: one byte was changed after it was written (checksum mismatch), at one of " +
                 std::to_string(at.size()) + " offsets of " + size + ": " + list + (at.size() > 8 ? ", ..." : ""));
        }
        if (copy_.compare(0, magic.size(), magic) != 0) fail(what + ": not a childtune " + what + " (bad magic)");
        fail(what + " is truncated or corrupt: the checksum of its first " + length +
             " bytes does not match the one stored after them (damaged in more than one byte, or cut short)");
    }

    std::istream* in_;
    std::string copy_;
    memory_buffer buffer_;
    std::optional<std::istream> memory_;
};

} // namespace childtune::detail
