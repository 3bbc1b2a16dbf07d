#pragma once
// Command-line flags for the example programs: "--flag value" and "--flag=value"
// alike, numbers checked to the last character, and every mistake reported with
// the usage text and exit code 2.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace example_cli {

class arguments {
public:
    arguments(int argc, char** argv, std::string program, const char* usage)
        : argc_(argc), argv_(argv), program_(std::move(program)), usage_(usage) {}

    //! Moves to the next flag; false when there is none. --help/-h print the usage
    //! and exit 0.
    bool next() {
        if (++i_ >= argc_) return false;
        flag_ = argv_[i_];
        value_.reset();
        if (const auto eq = flag_.find('='); eq != std::string::npos) {
            value_ = flag_.substr(eq + 1);
            flag_.resize(eq);
        }
        if (flag_ == "--help" || flag_ == "-h") {
            std::fputs(usage_, stdout);
            std::exit(0);
        }
        return true;
    }
    const std::string& flag() const { return flag_; }
    bool is(std::string_view name) const { return flag_ == name; }

    //! The current flag's value as text (the part after '=' or the next argument).
    std::string text() {
        if (value_) return *value_;
        if (i_ + 1 >= argc_) fail(flag_ + " needs a value");
        return argv_[++i_];
    }
    //! The current flag's value as a number; integers must be >= 0.
    template <class T>
    T number() {
        const std::string t = text();
        try {
            std::size_t used = 0;
            if constexpr (std::is_floating_point_v<T>) {
                const T v = static_cast<T>(std::stod(t, &used));
                if (used == t.size()) return v;
            } else {
                const long long v = std::stoll(t, &used);
                if (used == t.size() && v >= 0 &&
                    static_cast<unsigned long long>(v) <= static_cast<unsigned long long>(std::numeric_limits<T>::max()))
                    return static_cast<T>(v);
            }
        } catch (const std::exception&) {
        }
        fail("invalid value '" + t + "' for " + flag_);
    }

    [[noreturn]] void unknown() const { fail("unknown option '" + flag_ + "'"); }
    [[noreturn]] void fail(const std::string& message) const {
        std::fprintf(stderr, "%s: %s\n%s", program_.c_str(), message.c_str(), usage_);
        std::exit(2);
    }

private:
    int argc_;
    char** argv_;
    std::string program_;
    const char* usage_;
    int i_ = 0;
    std::string flag_;
    std::optional<std::string> value_;
};

} // namespace example_cli
