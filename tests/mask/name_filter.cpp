#include <childtune/mask/name_filter.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/error_matcher.hpp"

using namespace childtune;

namespace {
using test_support::message_of;
const std::vector<std::string> bert_names{"embeddings.word.weight", "encoder.layer.0.query.weight",
                                          "encoder.layer.0.query.bias", "encoder.layer.11.output.weight",
                                          "classifier.weight"};
std::vector<std::string> selected(const name_filter& f) {
    std::vector<std::string> out;
    for (const auto& n : bert_names)
        if (f.matches(n)) out.push_back(n);
    return out;
}
} // namespace

TEST_CASE("filter: globs match whole names with *, ?, sets and escapes", "[mask][name_filter]") {
    using detail::glob_match;
    CHECK(glob_match("encoder.*", "encoder.layer.0.weight"));
    CHECK_FALSE(glob_match("encoder.*", "xencoder.layer"));
    CHECK(glob_match("*.bias", "a.b.bias"));
    CHECK_FALSE(glob_match("*.bias", "a.bias.x"));
    CHECK(glob_match("layer.?.w", "layer.7.w"));
    CHECK_FALSE(glob_match("layer.?.w", "layer.11.w"));
    CHECK(glob_match("layer.[0-3].w", "layer.2.w"));
    CHECK_FALSE(glob_match("layer.[0-3].w", "layer.5.w"));
    CHECK(glob_match("layer.[!0-3].w", "layer.5.w"));
    CHECK(glob_match("a\\*b", "a*b"));
    CHECK_FALSE(glob_match("a\\*b", "axb"));
    CHECK(glob_match("*", ""));
    CHECK(glob_match("a*b*c", "aXXbYYbc"));
    CHECK_FALSE(glob_match("a*b*c", "aXXbYYb"));
    CHECK(glob_match("[x", "[x")); // an unclosed set is a literal '['
}

TEST_CASE("filter: include and exclude patterns, glob and regex, select by hand-checked names", "[mask][name_filter]") {
    CHECK(selected(name_filter()) == bert_names);
    CHECK(selected(name_filter().include_glob("encoder.*")) ==
          std::vector<std::string>{"encoder.layer.0.query.weight", "encoder.layer.0.query.bias", "encoder.layer.11.output.weight"});
    CHECK(selected(name_filter().include_glob("encoder.*").exclude_glob("*.bias")) ==
          std::vector<std::string>{"encoder.layer.0.query.weight", "encoder.layer.11.output.weight"});
    CHECK(selected(name_filter().include_regex(R"(encoder\.layer\.1\d\..*)")) ==
          std::vector<std::string>{"encoder.layer.11.output.weight"});
    CHECK(selected(name_filter().exclude_regex("(embeddings|classifier)\\..*")) ==
          std::vector<std::string>{"encoder.layer.0.query.weight", "encoder.layer.0.query.bias", "encoder.layer.11.output.weight"});
    // Two includes: the union.
    CHECK(selected(name_filter().include_glob("classifier.*").include_glob("embeddings.*")) ==
          std::vector<std::string>{"embeddings.word.weight", "classifier.weight"});
    // A regex matches the whole name: "layer" alone matches none.
    CHECK(selected(name_filter().include_regex("layer")).empty());
    CHECK(name_filter().include_glob("a*").exclude_regex("b.").describe() == "include glob 'a*', exclude regex 'b.'");
    CHECK(name_filter().describe() == "every name");
}

TEST_CASE("filter: a filter or a pattern that matches no name is an error naming it", "[mask][name_filter][bad_input]") {
    CHECK_NOTHROW(name_filter().include_glob("encoder.*").exclude_glob("*.bias").check(bert_names, "mask filter"));
    CHECK(message_of([] { name_filter().include_glob("encoder.layr.*").check(bert_names, "mask filter"); }) ==
          "childtune: mask filter (include glob 'encoder.layr.*'): include pattern 'encoder.layr.*' matches none of the 5 "
          "names 'embeddings.word.weight', 'encoder.layer.0.query.weight', 'encoder.layer.0.query.bias', "
          "'encoder.layer.11.output.weight' and 1 more (a typo, or names changed by a refactor?)");
    // One of two includes dead: still an error.
    CHECK_THAT(message_of([] { name_filter().include_glob("encoder.*").include_glob("pooler.*").check(bert_names, "f"); }),
               Catch::Contains("include pattern 'pooler.*' matches none"));
    // An exclude that excludes nothing is a no-op too.
    CHECK_THAT(message_of([] { name_filter().exclude_glob("*.gamma").check(bert_names, "f"); }),
               Catch::Contains("exclude pattern '*.gamma' matches none"));
    // Every pattern matches something, but the filter selects nothing.
    CHECK_THAT(message_of([] { name_filter().include_glob("encoder.*").exclude_glob("encoder.*").check(bert_names, "f"); }),
               Catch::Contains("selects none of the 5 names"));
    CHECK_THAT(message_of([] { name_filter().check(std::vector<std::string>{}, "f"); }),
               Catch::Contains("there is no name to select from"));
    CHECK_THAT(message_of([] { name_filter().include_regex("(unclosed"); }),
               Catch::Contains("name filter: regex '(unclosed' does not compile"));
    CHECK_THAT(message_of([] { name_filter().include_glob(""); }), Catch::Contains("an empty pattern"));
}
