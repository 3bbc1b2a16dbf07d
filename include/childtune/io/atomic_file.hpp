#pragma once
//! \file
//! Crash-safe replacement of a file: the new contents go to a temporary file
//! beside the target, are flushed to the disk, and only then renamed over the
//! target (and the directory flushed). A crash, a kill or a full disk at any
//! moment leaves either the complete old file or the complete new one, never a
//! torn mix, so a checkpoint that dies mid-save loses nothing. (The formats'
//! checksums additionally catch files torn or edited by other means.)
//!
//! A process killed mid-save can leave its temporary file behind
//! (`<name>.tmp.<pid>.<n>`); it is never read, and a later save does not reuse it.

#include <childtune/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#define CHILDTUNE_HAS_FSYNC 1
#else
#define CHILDTUNE_HAS_FSYNC 0
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_FSYNC
//! fsync of the file or directory at `path`; false (errno set) on failure.
inline bool sync_path(const std::filesystem::path& path, bool directory) {
    const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
}
#endif

//! A name for the temporary file of `target` no other save uses.
inline std::filesystem::path temporary_path_for(const std::filesystem::path& target) {
    static std::atomic<unsigned long> counter{0};
#if CHILDTUNE_HAS_FSYNC
    const long pid = static_cast<long>(::getpid());
#else
    const long pid = 0;
#endif
    std::filesystem::path temp = target;
    temp += ".tmp." + std::to_string(pid) + "." + std::to_string(counter.fetch_add(1));
    return temp;
}

//! Writes `path` through `write(std::ostream&)` so that it is replaced all at
//! once or not at all. Throws childtune::error naming the path (and leaves the old
//! file as it was) when the temporary file cannot be created, written, flushed or
//! renamed, or when `write` throws.
template <class Write>
void replace_file_atomically(const std::string& path, const char* what, Write&& write) {
    const std::filesystem::path target(path);
    const std::filesystem::path temp = temporary_path_for(target);
    const auto failed = [&](const std::string& problem) {
        std::error_code ignored;
        std::filesystem::remove(temp, ignored);
        fail(std::string("saving ") + what + " '" + path + "': " + problem + "; the previous file is unchanged");
    };
    {
        std::ofstream out(temp, std::ios::binary | std::ios::trunc);
        if (!out) failed(std::string("cannot create a temporary file beside it (") + std::strerror(errno) + ")");
        try {
            write(out);
        } catch (const error& e) {
            failed(e.what());
        } catch (const std::exception& e) {
            failed(e.what());
        }
        out.flush();
        if (!out) failed("writing failed (stream error or disk full)");
        out.close();
        if (out.fail()) failed("closing the temporary file failed (disk full?)");
    }
#if CHILDTUNE_HAS_FSYNC
    if (!sync_path(temp, false)) failed(std::string("flushing to the disk failed (") + std::strerror(errno) + ")");
#endif
    std::error_code ec;
    std::filesystem::rename(temp, target, ec);
    if (ec) failed("renaming the temporary file over it failed (" + ec.message() + ")");
#if CHILDTUNE_HAS_FSYNC
    // The rename is durable once the directory is; a failure here cannot undo it.
    (void)sync_path(target.has_parent_path() ? target.parent_path() : std::filesystem::path("."), true);
#endif
}

} // namespace childtune::detail
