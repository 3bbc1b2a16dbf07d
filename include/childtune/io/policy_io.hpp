#pragma once
//! \file
//! How a mask policy of the user's writes its hyperparameters into an optimizer
//! state file and reads them back (the optional `save`/`load` of mask_policy).
//!
//! A policy's bytes are stored as one length-prefixed record inside the state
//! file (named by the policy's `policy_name`), so a reader that does not know
//! the policy can say so instead of misreading the rest, and a `load` that
//! reads too much or too little is caught. Values are little-endian and covered
//! by the state file's checksum.

#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>

#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace childtune {

//! Where a policy's `save(policy_writer&) const` writes.
class policy_writer {
public:
    //! Appends one arithmetic value (little-endian).
    template <class T>
        requires std::is_arithmetic_v<T>
    void value(T v) { w_.value(v); }
    //! Appends a length-prefixed string.
    void string(std::string_view s) { w_.string(s); }
    //! Appends a length-prefixed array of arithmetic values.
    template <class T>
        requires std::is_arithmetic_v<T>
    void array(std::span<const T> a) {
        w_.value<std::uint64_t>(a.size());
        w_.array(a);
    }
    //! The bytes written so far.
    std::string bytes() const { return out_.str(); }

private:
    std::ostringstream out_;
    detail::binary_writer w_{out_};
};

//! What a policy's `static M load(policy_reader&)` reads from. Every read is
//! checked: past the record's end is a childtune::error naming the policy.
class policy_reader {
public:
    //! A reader over one policy's record `bytes`; `policy` names it in error messages.
    policy_reader(std::string bytes, std::string policy) : in_(std::move(bytes)), r_(in_, "mask policy '" + policy + "'") {}

    //! Reads one value written by policy_writer::value.
    template <class T>
        requires std::is_arithmetic_v<T>
    T value() { return r_.value<T>(); }
    //! Reads a string written by policy_writer::string.
    std::string string() { return r_.string(); }
    //! Reads an array written by policy_writer::array (read in chunks, so a
    //! corrupt length fails at the record's end instead of allocating it at once).
    template <class T>
        requires std::is_arithmetic_v<T>
    std::vector<T> array() { return r_.array_untrusted<T>(r_.value<std::uint64_t>()); }
    //! Whether every byte of the record was read.
    bool at_end() { return in_.peek() == std::char_traits<char>::eof(); }
    //! Where the reader is, for error messages ("mask policy 'NAME'").
    const std::string& what() const { return r_.what(); }

private:
    std::istringstream in_;
    detail::binary_reader r_;
};

} // namespace childtune
