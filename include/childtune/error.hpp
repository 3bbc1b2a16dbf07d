#pragma once
//! \file
//! The single exception type of the library.

#include <stdexcept>
#include <string>

namespace childtune {

//! Thrown for every rejected input. The message names the group and/or tensor
//! involved and the problem. Every entry point that throws it leaves the object it
//! was called on unchanged (strong exception guarantee), so a caller can fix the
//! input and retry.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] inline void fail(const std::string& message) { throw error("childtune: " + message); }
} // namespace detail

} // namespace childtune
