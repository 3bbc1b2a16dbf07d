#pragma once
//! \file
//! Little-endian binary streams with a running checksum, used by every file
//! format of the library (optimizer state, masks).
//!
//! Readers treat their input as untrusted: every length is checked against what
//! the caller expects or against a hard cap, data is read in bounded chunks so a
//! forged length cannot trigger a huge allocation, and a short read is reported as
//! a truncated file.

#include <childtune/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <istream>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace childtune::detail {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big);

//! 64-bit FNV-1a over 8-byte little-endian words (bytes past the last full word
//! are folded one at a time). Word-wise so a multi-gigabyte state file is hashed at
//! memory speed; it detects torn and edited files, it is not a cryptographic MAC.
class checksum64 {
public:
    void update(const void* data, std::size_t n) {
        auto p = static_cast<const unsigned char*>(data);
        while (n > 0 && pending_ > 0) {
            feed_byte(*p++);
            --n;
        }
        for (; n >= 8; n -= 8, p += 8) {
            std::uint64_t w = 0;
            for (int i = 7; i >= 0; --i) w = (w << 8) | p[i];
            mix(w);
        }
        while (n-- > 0) feed_byte(*p++);
    }
    //! Adds a number as its 8 bytes in memory order (a field of a fingerprint).
    void update_number(std::uint64_t v) { update(&v, sizeof v); }
    //! Adds a string as its length, then its bytes: ("ab", "c") and ("a", "bc") differ.
    void update_string(std::string_view s) {
        update_number(s.size());
        update(s.data(), s.size());
    }
    std::uint64_t value() const {
        std::uint64_t h = hash_;
        for (std::size_t i = 0; i < pending_; ++i) h = (h ^ buffer_[i]) * prime;
        return h;
    }

private:
    static constexpr std::uint64_t prime = 0x100000001b3ull;
    void mix(std::uint64_t w) { hash_ = (hash_ ^ w) * prime; }
    void feed_byte(unsigned char b) {
        buffer_[pending_++] = b;
        if (pending_ == 8) {
            std::uint64_t w = 0;
            for (int i = 7; i >= 0; --i) w = (w << 8) | buffer_[i];
            mix(w);
            pending_ = 0;
        }
    }
    std::uint64_t hash_ = 0xcbf29ce484222325ull;
    std::array<unsigned char, 8> buffer_{};
    std::size_t pending_ = 0;
};

template <class T>
T byteswap_if_big(T v) {
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
        unsigned char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
        std::memcpy(&v, b, sizeof(T));
    }
    return v;
}

class binary_writer {
public:
    explicit binary_writer(std::ostream& out) : out_(out) {}

    void bytes(const void* data, std::size_t n) {
        out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
        if (!out_) fail("writing failed (stream error or disk full)");
        sum_.update(data, n);
    }
    template <class T>
        requires std::is_arithmetic_v<T>
    void value(T v) {
        v = byteswap_if_big(v);
        bytes(&v, sizeof v);
    }
    void string(std::string_view s) {
        value<std::uint64_t>(s.size());
        bytes(s.data(), s.size());
    }
    //! A length-prefixed run of bytes of any length (string() is for names).
    void string_bytes(std::string_view s) { string(s); }
    //! Arrays of arithmetic values or of 16-bit storage types, little-endian.
    template <class T>
    void array(std::span<const T> a) {
        if constexpr (std::endian::native == std::endian::little) {
            bytes(a.data(), a.size_bytes());
        } else {
            for (const T& x : a) value(x);
        }
    }
    //! Starts a file: 8 magic bytes naming the format, then its version.
    void header(std::string_view magic, std::uint32_t version) {
        bytes(magic.data(), magic.size());
        value(version);
    }
    //! Ends the file with the checksum of everything written before it.
    void finish() {
        const std::uint64_t h = byteswap_if_big(sum_.value());
        out_.write(reinterpret_cast<const char*>(&h), sizeof h);
        out_.flush();
        if (!out_) fail("writing failed (stream error or disk full)");
    }

private:
    std::ostream& out_;
    checksum64 sum_;
};

class binary_reader {
public:
    binary_reader(std::istream& in, std::string what) : in_(in), what_(std::move(what)) {}

    void bytes(void* data, std::size_t n) {
        in_.read(static_cast<char*>(data), static_cast<std::streamsize>(n));
        if (static_cast<std::size_t>(in_.gcount()) != n) fail(what_ + " is truncated");
        sum_.update(data, n);
    }
    template <class T>
        requires std::is_arithmetic_v<T>
    T value() {
        T v;
        bytes(&v, sizeof v);
        return byteswap_if_big(v);
    }
    std::string string(std::size_t max_length = 4096) {
        const auto n = value<std::uint64_t>();
        if (n > max_length) fail(what_ + " is corrupt: a name of " + std::to_string(n) + " bytes");
        std::string s(static_cast<std::size_t>(n), '\0');
        bytes(s.data(), s.size());
        return s;
    }
    //! A run written by binary_writer::string_bytes, read in bounded chunks.
    std::string string_bytes() {
        const auto v = array_untrusted<char>(value<std::uint64_t>());
        return {v.begin(), v.end()};
    }
    //! Reads exactly `count` elements into `out` (already sized by the caller from
    //! trusted information).
    template <class T>
    void array_into(std::span<T> out) {
        bytes(out.data(), out.size_bytes());
        if constexpr (std::endian::native == std::endian::big)
            for (T& x : out) x = byteswap_if_big(x);
    }
    //! Reads `count` elements whose count came from the file itself: grows the
    //! vector chunk by chunk so a forged count fails as "truncated" instead of
    //! allocating.
    template <class T>
    std::vector<T> array_untrusted(std::uint64_t count) {
        std::vector<T> out;
        constexpr std::uint64_t chunk = (1u << 20) / sizeof(T);
        while (out.size() < count) {
            const std::size_t old = out.size();
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, count - old));
            out.resize(old + take);
            array_into(std::span<T>(out.data() + old, take));
        }
        return out;
    }
    //! Checks the magic bytes and the format version written by binary_writer::header.
    void header(std::string_view magic, std::uint32_t version) { (void)header_of_versions(magic, version, version); }
    //! Checks the magic bytes and returns the format version, which must be in
    //! [oldest, newest].
    std::uint32_t header_of_versions(std::string_view magic, std::uint32_t oldest, std::uint32_t newest) {
        std::string m(magic.size(), '\0');
        bytes(m.data(), m.size());
        if (m != magic) fail(what_ + ": not a childtune " + what_ + " (bad magic)");
        const auto v = value<std::uint32_t>();
        if (v < oldest || v > newest)
            fail(what_ + ": format version " + std::to_string(v) + " is not supported (expected " + std::to_string(oldest) +
                 (oldest == newest ? "" : " to " + std::to_string(newest)) + ")");
        return v;
    }
    //! Reads the trailing checksum and compares it with everything read so far.
    void finish() {
        const std::uint64_t expected = sum_.value();
        std::uint64_t stored;
        in_.read(reinterpret_cast<char*>(&stored), sizeof stored);
        if (in_.gcount() != sizeof stored) fail(what_ + " is truncated (no checksum)");
        if (byteswap_if_big(stored) != expected) fail(what_ + " is corrupt: checksum mismatch");
    }
    //! finish(), then the end of the stream: a whole file (read to its end by
    //! verified_input) ends with its checksum. Without this check a valid file
    //! followed by anything, under a checksum recomputed over both, would load
    //! and then save back to other bytes.
    void finish_file() {
        finish();
        if (in_.peek() == std::istream::traits_type::eof()) {
            in_.clear();
            return;
        }
        in_.ignore(std::numeric_limits<std::streamsize>::max());
        const auto extra = in_.gcount();
        fail(what_ + " is corrupt: " + std::to_string(extra) + (extra == 1 ? " byte follows" : " bytes follow") +
             " its checksum (a file ends with it)");
    }
    const std::string& what() const { return what_; }

private:
    std::istream& in_;
    std::string what_;
    checksum64 sum_;
};

} // namespace childtune::detail
