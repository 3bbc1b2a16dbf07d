// Files and runs of childtune 0.1 replayed by this version (tests/compat/scenarios.hpp):
// every scenario, run from scratch, reproduces 0.1's trajectory bit for bit (the
// parameters and the state file's bytes after every step), and 0.1's state file
// after `saved_step` steps loads and resumes to 0.1's later steps bit for bit.

#include "compat/scenarios.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#ifndef CHILDTUNE_COMPAT_DATA_DIR
#error "CHILDTUNE_COMPAT_DATA_DIR must name tests/data/v0.1"
#endif

namespace {

struct recorded_step {
    std::string params, state;
};

const std::map<std::string, std::vector<recorded_step>>& recorded() {
    static const auto table = [] {
        std::map<std::string, std::vector<recorded_step>> out;
        std::ifstream in(std::string(CHILDTUNE_COMPAT_DATA_DIR) + "/trajectories.txt");
        std::string name, params, state;
        std::size_t step = 0;
        while (in >> name >> step >> params >> state) {
            auto& steps = out[name];
            steps.resize(std::max(steps.size(), step));
            steps[step - 1] = {params, state};
        }
        return out;
    }();
    return table;
}

std::string file_of(const std::string& name) {
    std::ifstream in(std::string(CHILDTUNE_COMPAT_DATA_DIR) + "/" + name + ".ctstate", std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("compat: every scenario of 0.1 is reproduced bit for bit, state files included") {
    const auto all = compat::scenarios();
    REQUIRE(recorded().size() == all.size());
    for (const auto& s : all) {
        INFO("scenario " << s.name);
        const auto& want = recorded().at(s.name);
        REQUIRE(want.size() == static_cast<std::size_t>(compat::steps));
        std::vector<std::string> params, states;
        std::string saved;
        s.run({}, params, states, saved);
        REQUIRE(params.size() == want.size());
        for (std::size_t t = 0; t < want.size(); ++t) {
            INFO("after step " << t + 1);
            CHECK(params[t] == want[t].params);
            CHECK(states[t] == want[t].state);
        }
        CHECK(saved == file_of(s.name));
    }
}

TEST_CASE("compat: state files written by 0.1 load and resume bit for bit") {
    for (const auto& s : compat::scenarios()) {
        INFO("scenario " << s.name);
        const std::string file = file_of(s.name);
        REQUIRE(!file.empty());
        std::vector<std::string> params, states;
        std::string unused;
        s.run(file, params, states, unused);
        const auto& want = recorded().at(s.name);
        REQUIRE(params.size() == static_cast<std::size_t>(compat::steps - compat::saved_step));
        for (std::size_t t = 0; t < params.size(); ++t) {
            INFO("after step " << compat::saved_step + t + 1);
            CHECK(params[t] == want[compat::saved_step + t].params);
            CHECK(states[t] == want[compat::saved_step + t].state);
        }
    }
}
