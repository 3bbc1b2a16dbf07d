#pragma once
//! \file
//! Choosing parameters by name: include and exclude patterns, glob or regex,
//! with no silent no-ops.
//!
//! The published Child-Tuning code masks the parameters whose name contains
//! "layer"; after a renaming refactor such a filter matches nothing and the run
//! is plain fine-tuning without a word (issue 17). A name_filter therefore
//! checks itself against the names it is applied to (check()): a filter that
//! selects no name, an include pattern that matches no name and an exclude
//! pattern that matches no name are errors that name the pattern and show some
//! of the names it was tried on.

#include <childtune/error.hpp>

#include <cstddef>
#include <memory>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace childtune {

namespace detail {
//! Shell-style match of the whole `name`: `*` any run of characters (dots
//! included), `?` one character, `[abc]`, `[a-z]`, `[!abc]` one character of
//! (not of) a set; `\` makes the next character literal. Iterative, with one
//! backtrack point: O(|pattern|·|name|) at worst.
inline bool glob_match(std::string_view pattern, std::string_view name) {
    std::size_t p = 0, n = 0, star_p = std::string_view::npos, star_n = 0;
    const auto one = [&](std::size_t& pi, char c) -> bool { // matches c at pattern[pi], advances pi
        const char pc = pattern[pi];
        if (pc == '?') return ++pi, true;
        if (pc == '\\' && pi + 1 < pattern.size()) return pi += 2, pattern[pi - 1] == c;
        if (pc == '[') {
            std::size_t i = pi + 1;
            const bool negate = i < pattern.size() && pattern[i] == '!';
            if (negate) ++i;
            bool found = false;
            const std::size_t first = i;
            for (; i < pattern.size() && (pattern[i] != ']' || i == first); ++i) {
                if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
                    found |= pattern[i] <= c && c <= pattern[i + 2];
                    i += 2;
                } else {
                    found |= pattern[i] == c;
                }
            }
            if (i >= pattern.size()) return ++pi, pc == c; // no closing ']': a literal '['
            pi = i + 1;
            return found != negate;
        }
        return ++pi, pc == c;
    };
    while (n < name.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star_p = ++p;
            star_n = n;
            continue;
        }
        std::size_t next = p;
        if (p < pattern.size() && one(next, name[n])) {
            p = next;
            ++n;
            continue;
        }
        if (star_p == std::string_view::npos) return false;
        p = star_p;
        n = ++star_n;
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

//! "'a', 'b', 'c' and 2 more": names shown in a filter's error.
template <class Names>
std::string some_of(const Names& names) {
    std::string out;
    std::size_t shown = 0;
    for (const auto& name : names) {
        if (shown == 4) return out + " and " + std::to_string(std::size(names) - shown) + " more";
        out += (shown++ ? ", '" : "'") + std::string(name) + "'";
    }
    return out;
}
} // namespace detail

//! Which names a mask (or a parameter group) applies to: a name is selected when
//! it matches some include pattern (every name, when there is none) and no
//! exclude pattern. Patterns are globs (`encoder.layer.*.weight`) or ECMAScript
//! regular expressions matched against the whole name (`encoder\.layer\.\d+\..*`).
//! Copyable and cheap to copy (compiled regexes are shared).
class name_filter {
public:
    //! How a pattern is read.
    enum class syntax : unsigned char {
        glob,  //!< `*`, `?`, `[set]`, `[!set]`, `\` escapes; matches the whole name
        regex, //!< std::regex ECMAScript, std::regex_match (the whole name)
    };
    //! One pattern.
    struct pattern {
        //! The text as given.
        std::string text;
        //! Glob or regex.
        syntax kind = syntax::glob;
        //! Include (true) or exclude.
        bool include = true;
        //! Equal text, kind and direction.
        friend bool operator==(const pattern& a, const pattern& b) {
            return a.text == b.text && a.kind == b.kind && a.include == b.include;
        }
    };

    //! Selects every name until patterns are added.
    name_filter() = default;

    //! Adds an include glob; returns *this for chaining.
    name_filter& include_glob(std::string p) { return add({std::move(p), syntax::glob, true}); }
    //! Adds an include regex; throws childtune::error naming it when it does not compile.
    name_filter& include_regex(std::string p) { return add({std::move(p), syntax::regex, true}); }
    //! Adds an exclude glob.
    name_filter& exclude_glob(std::string p) { return add({std::move(p), syntax::glob, false}); }
    //! Adds an exclude regex; throws childtune::error naming it when it does not compile.
    name_filter& exclude_regex(std::string p) { return add({std::move(p), syntax::regex, false}); }

    //! Whether `name` is selected.
    bool matches(std::string_view name) const {
        bool any_include = false, included = false;
        for (std::size_t i = 0; i < patterns_.size(); ++i) {
            if (patterns_[i].include) {
                any_include = true;
                included = included || match(i, name);
            } else if (match(i, name)) {
                return false;
            }
        }
        return included || !any_include;
    }
    //! The same, as a predicate (the LibTorch adapter's name_predicate).
    bool operator()(std::string_view name) const { return matches(name); }

    //! The patterns, in the order added.
    const std::vector<pattern>& patterns() const { return patterns_; }
    //! `include glob 'encoder.*', exclude regex '.*\.bias'` (or `every name`).
    std::string describe() const {
        if (patterns_.empty()) return "every name";
        std::string out;
        for (const auto& p : patterns_)
            out += std::string(out.empty() ? "" : ", ") + (p.include ? "include " : "exclude ") +
                   (p.kind == syntax::glob ? "glob '" : "regex '") + p.text + "'";
        return out;
    }

    //! Throws childtune::error, naming `what` (e.g. "mask filter of group
    //! 'encoder'"), the pattern and some of `names`, when the filter selects none
    //! of `names`, or one of its patterns matches none of them (a typo that
    //! would otherwise change nothing). `names`: any range of string-like values.
    template <class Names>
    void check(const Names& names, std::string_view what) const {
        const std::string context = std::string(what) + " (" + describe() + ")";
        if (std::size(names) == 0) detail::fail(context + ": there is no name to select from, so it would apply to nothing");
        for (std::size_t i = 0; i < patterns_.size(); ++i) {
            bool hit = false;
            for (const auto& name : names) hit = hit || match(i, std::string_view(name));
            if (!hit)
                detail::fail(context + ": " + (patterns_[i].include ? "include" : "exclude") + " pattern '" +
                             patterns_[i].text + "' matches none of the " + std::to_string(std::size(names)) +
                             " names " + detail::some_of(names) + " (a typo, or names changed by a refactor?)");
        }
        for (const auto& name : names)
            if (matches(std::string_view(name))) return;
        detail::fail(context + ": selects none of the " + std::to_string(std::size(names)) + " names " +
                     detail::some_of(names) + ", so it would apply to nothing");
    }

    //! Equal patterns in the same order.
    friend bool operator==(const name_filter& a, const name_filter& b) { return a.patterns_ == b.patterns_; }

private:
    name_filter& add(pattern p) {
        if (p.text.empty()) detail::fail("name filter: an empty pattern matches no parameter name");
        std::shared_ptr<const std::regex> compiled;
        if (p.kind == syntax::regex) {
            try {
                compiled = std::make_shared<const std::regex>(p.text, std::regex::ECMAScript);
            } catch (const std::regex_error& e) {
                detail::fail("name filter: regex '" + p.text + "' does not compile (" + e.what() + ")");
            }
        }
        patterns_.push_back(std::move(p));
        regexes_.push_back(std::move(compiled));
        return *this;
    }
    bool match(std::size_t i, std::string_view name) const {
        if (regexes_[i]) return std::regex_match(name.begin(), name.end(), *regexes_[i]);
        return detail::glob_match(patterns_[i].text, name);
    }

    std::vector<pattern> patterns_;
    std::vector<std::shared_ptr<const std::regex>> regexes_;
};

} // namespace childtune
