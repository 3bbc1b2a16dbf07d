#pragma once
// Catch2 matcher: a childtune::error whose message contains a text; and the
// message of the error a call throws, for tests that check a whole message.

#include <childtune/error.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <utility>

namespace test_support {

struct error_with : Catch::MatcherBase<childtune::error> {
    std::string text;
    explicit error_with(std::string t) : text(std::move(t)) {}
    bool match(const childtune::error& e) const override { return std::string(e.what()).find(text) != std::string::npos; }
    std::string describe() const override { return "is a childtune::error containing \"" + text + "\""; }
};

//! The message of the childtune::error `f()` throws, or "(no error)" when it returns.
std::string message_of(auto&& f) {
    try {
        f();
    } catch (const childtune::error& e) {
        return e.what();
    }
    return "(no error)";
}

} // namespace test_support
