//! libFuzzer target: the scores file (childtune::score_set<float/double>::load).
//!
//! The input's first byte picks the checksum fix-up (bit 0) and the score type
//! it is loaded as (bit 1: double); the rest is the file. Oracle: a file is
//! either rejected with childtune::error or loads into a set with unique,
//! non-empty names that saves back to exactly the same bytes (the format is
//! canonical), and loading those bytes gives an equal set.
#include "support/harness.hpp"

#include <childtune/io/score_file.hpp>

#include <cstdint>
#include <limits>
#include <set>
#include <sstream>
#include <string>

namespace {

using namespace childtune;

template <class Score>
std::string saved(const score_set<Score>& set) {
    std::ostringstream out;
    set.save(out);
    return out.str();
}

template <class Score>
bool load_and_check(const std::string& file) {
    std::istringstream in(file);
    score_set<Score> set;
    try {
        set = score_set<Score>::load(in);
    } catch (const childtune::error&) {
        return false;
    }
    std::set<std::string> names;
    for (const auto& e : set.entries()) {
        fuzz::require(!e.name.empty(), "a loaded score tensor has an empty name");
        fuzz::require(names.insert(e.name).second, "a loaded score set names a tensor twice");
        fuzz::require(set.find(e.name) == &e.scores, "find() does not return the loaded entry");
    }
    const std::string again = saved(set);
    fuzz::require(again == file, "an accepted scores file does not save back to the same bytes");
    std::istringstream in2(again);
    fuzz::require(score_set<Score>::load(in2) == set, "a loaded score set does not survive save/load unchanged");
    return true;
}

bool dispatch(const fuzz::framed_input& in) {
    return (in.selector & 2u) ? load_and_check<double>(in.file) : load_and_check<float>(in.file);
}

fuzz::seed_map make_seeds() {
    fuzz::seed_map seeds;
    seeds["valid-empty-float"] = fuzz::frame(0, saved(score_set<float>{}));
    score_set<float> f;
    f.add("encoder.layer.0.attention.self.query.weight", {0.5f, 0.0f, 3e-8f, std::numeric_limits<float>::infinity()});
    f.add("empty", {});
    f.add("b", {1.0f});
    seeds["valid-float-three-tensors"] = fuzz::frame(0, saved(f));
    score_set<double> d;
    d.add("w", {1e-300, 2.0, 0.25});
    seeds["valid-double-one-tensor"] = fuzz::frame(2, saved(d));
    return seeds;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::seed_hooks(make_seeds, [](const std::string& framed) {
        return dispatch(fuzz::unframe(reinterpret_cast<const std::uint8_t*>(framed.data()), framed.size()));
    });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    dispatch(fuzz::unframe(data, size));
    return 0;
}
