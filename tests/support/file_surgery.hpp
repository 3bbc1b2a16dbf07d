#pragma once
// Editing a childtune file (io/binary.hpp: the bytes, then their checksum) the
// way a deliberate forger would: after the edit the trailing checksum is
// rewritten, so the loader's own checks, not the checksum, must refuse it.

#include <childtune/io/binary.hpp>

#include <cstdint>
#include <cstring>
#include <string>

namespace test_support {

//! `file` with its last 8 bytes replaced by the checksum of everything before them.
inline std::string with_checksum_recomputed(std::string file) {
    childtune::detail::checksum64 sum;
    sum.update(file.data(), file.size() - 8);
    const std::uint64_t h = childtune::detail::byteswap_if_big(sum.value());
    std::memcpy(file.data() + file.size() - 8, &h, sizeof h);
    return file;
}

//! A whole valid file followed by `extra`, under one checksum recomputed over
//! both: every byte of the original file, its checksum included, still reads
//! as a valid file, and only the bytes after it are wrong.
inline std::string with_bytes_after_checksum(const std::string& file, const std::string& extra) {
    return with_checksum_recomputed(file + extra + std::string(8, '\0'));
}

} // namespace test_support
