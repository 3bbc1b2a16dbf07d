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
#include <cstdio>
#include <cstring>
#include <fstream>
#include <ostream>
#include <string>

// POSIX systems rename over the target with rename(2) and flush with fsync;
// others go through std::filesystem (a heavy header, so only where needed).
#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
//! 1 where files are flushed with fsync(2) and replaced with rename(2) (POSIX);
//! 0 where std::filesystem replaces them without a flush.
#define CHILDTUNE_HAS_FSYNC 1
#else
#include <filesystem>
#include <system_error>
//! 0: no fsync(2); std::filesystem replaces the file.
#define CHILDTUNE_HAS_FSYNC 0
#endif

namespace childtune::detail {

#if CHILDTUNE_HAS_FSYNC
//! fsync of the file or directory at `path`; false (errno set) on failure.
inline bool sync_path(const std::string& path, bool directory) {
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
inline std::string temporary_path_for(const std::string& target) {
    static std::atomic<unsigned long> counter{0};
#if CHILDTUNE_HAS_FSYNC
    const long pid = static_cast<long>(::getpid());
#else
    const long pid = 0;
#endif
    return target + ".tmp." + std::to_string(pid) + "." + std::to_string(counter.fetch_add(1));
}

//! Renames `from` over `to`; an empty string on success, else the reason.
inline std::string rename_over(const std::string& from, const std::string& to) {
#if CHILDTUNE_HAS_FSYNC
    if (std::rename(from.c_str(), to.c_str()) != 0) return std::strerror(errno);
    return {};
#else
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    return ec ? ec.message() : std::string();
#endif
}

//! Writes `path` through `write(std::ostream&)` so that it is replaced all at
//! once or not at all. Throws childtune::error naming the path (and leaves the old
//! file as it was) when the temporary file cannot be created, written, flushed or
//! renamed, or when `write` throws.
template <class Write>
void replace_file_atomically(const std::string& path, const char* what, Write&& write) {
    const std::string temp = temporary_path_for(path);
    const auto failed = [&](const std::string& problem) {
        (void)std::remove(temp.c_str());
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
    if (const std::string why = rename_over(temp, path); !why.empty())
        failed("renaming the temporary file over it failed (" + why + ")");
#if CHILDTUNE_HAS_FSYNC
    // The rename is durable once the directory is; a failure here cannot undo it.
    const auto slash = path.find_last_of('/');
    (void)sync_path(slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash), true);
#endif
}

} // namespace childtune::detail
