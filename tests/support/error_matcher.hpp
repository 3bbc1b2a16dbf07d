#pragma once
// Catch2 matcher: a childtune::error whose message contains a text.

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

} // namespace test_support
