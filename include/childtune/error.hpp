#pragma once
//! \file
//! The single exception type of the library.

#include <charconv>
#include <stdexcept>
#include <string>
#include <type_traits>

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

//! A number as error messages print it: the shortest text that reads back as
//! the same value (std::to_chars without a precision), so a rejected
//! p = 1.0000000000000002 is not reported as 1.000000; nan and inf as such.
template <class T>
    requires std::is_arithmetic_v<T>
std::string format_number(T value) {
    char buffer[64];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, r.ptr);
}
} // namespace detail

} // namespace childtune
