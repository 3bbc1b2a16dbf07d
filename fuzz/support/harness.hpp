#pragma once
//! \file
//! What every childtune fuzz target shares: the oracle ("a rejected input changes
//! nothing, an accepted one survives a round trip"), the trailing-checksum fix-up
//! that lets mutated bodies reach the checks behind the checksum, and the seed
//! corpus hooks.
//!
//! Seeds are written by the target itself (its own registration, so they cannot
//! drift from it): `CHILDTUNE_FUZZ_WRITE_SEEDS=<dir> ./fuzz_x` writes them and
//! exits; `CHILDTUNE_FUZZ_CHECK_SEEDS=<dir>` regenerates them in memory and fails
//! when the committed files differ (a format change must regenerate the corpus).

#include <childtune/io/binary.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>

namespace childtune::fuzz {

//! A violated oracle: abort, so libFuzzer records the input as a crash.
[[noreturn]] inline void finding(std::string_view what) {
    std::fprintf(stderr, "childtune fuzz finding: %.*s\n", static_cast<int>(what.size()), what.data());
    std::abort();
}
inline void require(bool ok, std::string_view what) {
    if (!ok) finding(what);
}

//! Rewrites the last 8 bytes of `file` as the checksum binary_writer::finish()
//! would have written over everything before them. Without this, nearly every
//! mutated input would be stopped at the checksum and the parser's own checks
//! behind it would never see a well-formed-but-wrong file.
inline void fix_trailing_checksum(std::string& file) {
    if (file.size() < 8) return;
    detail::checksum64 sum;
    sum.update(file.data(), file.size() - 8);
    const std::uint64_t h = detail::byteswap_if_big(sum.value());
    std::memcpy(file.data() + file.size() - 8, &h, sizeof h);
}

//! The input as the parser sees it: byte 0 picks whether the checksum is fixed
//! up (odd) or left as the fuzzer made it (even); the rest is the file.
struct framed_input {
    std::uint8_t selector = 0; //!< bits above bit 0 are the target's to use
    std::string file;
};
inline framed_input unframe(const std::uint8_t* data, std::size_t size) {
    framed_input in;
    if (size == 0) return in;
    in.selector = data[0];
    in.file.assign(reinterpret_cast<const char*>(data + 1), size - 1);
    if (in.selector & 1u) fix_trailing_checksum(in.file);
    return in;
}
inline std::string frame(std::uint8_t selector, std::string_view file) {
    std::string out(1, static_cast<char>(selector));
    out.append(file);
    return out;
}

//! Seed name -> framed seed bytes.
using seed_map = std::map<std::string, std::string>;

//! Handles CHILDTUNE_FUZZ_WRITE_SEEDS / CHILDTUNE_FUZZ_CHECK_SEEDS; returns
//! normally when neither is set. Call from LLVMFuzzerInitialize. The check also
//! requires `accepts(seed)` for every seed: a seed the parser rejects explores
//! nothing past the first check that rejects it.
template <class MakeSeeds, class Accepts>
void seed_hooks(MakeSeeds&& make_seeds, Accepts&& accepts) {
    namespace fs = std::filesystem;
    if (const char* dir = std::getenv("CHILDTUNE_FUZZ_WRITE_SEEDS")) {
        fs::create_directories(dir);
        for (const auto& [name, bytes] : make_seeds()) {
            std::ofstream out(fs::path(dir) / name, std::ios::binary);
            out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
            if (!out) finding("cannot write seed " + name);
        }
        std::exit(0);
    }
    if (const char* dir = std::getenv("CHILDTUNE_FUZZ_CHECK_SEEDS")) {
        int stale = 0;
        for (const auto& [name, bytes] : make_seeds()) {
            std::ifstream in(fs::path(dir) / name, std::ios::binary);
            const std::string committed{std::istreambuf_iterator<char>(in), {}};
            if (!in.is_open() || committed != bytes) {
                std::fprintf(stderr, "seed %s is missing or stale: regenerate the corpus with CHILDTUNE_FUZZ_WRITE_SEEDS\n",
                             name.c_str());
                ++stale;
            }
            if (!accepts(bytes)) {
                std::fprintf(stderr, "seed %s is rejected by the parser\n", name.c_str());
                ++stale;
            }
        }
        std::fprintf(stderr, "childtune fuzz: seed corpus %s\n", stale == 0 ? "matches the current format" : "is stale");
        std::exit(stale == 0 ? 0 : 1);
    }
}

} // namespace childtune::fuzz
