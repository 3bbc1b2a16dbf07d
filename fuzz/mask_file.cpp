//! libFuzzer target: the mask file (childtune::mask_set::load).
//!
//! The input's first byte picks the checksum fix-up (bit 0); the rest is the
//! file. Oracle: a file is either rejected with childtune::error or loads into a
//! set that is internally consistent (unique non-empty names, kept counts within
//! sizes, no bit set past a tensor's end) that saves back to exactly the same
//! bytes (the format is canonical) and loads to an equal set; as a fixed mask it
//! serves tensors of its own names and sizes, and refuses, with
//! childtune::error, a parameter set with one size changed or one name missing.
#include "support/harness.hpp"

#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace childtune;

std::string saved(const mask_set& set) {
    std::ostringstream out;
    set.save(out);
    return out.str();
}

//! The set, as a fixed mask, serves a parameter set of its own names and sizes;
//! one size changed or one tensor missing is a childtune::error, never a crash.
void check_against_models(const mask_set& set) {
    std::vector<tensor_info> tensors;
    for (const auto& e : set.entries()) {
        tensor_info t;
        t.name = e.name;
        t.size = e.mask.size();
        t.elements = e.mask.size();
        tensors.push_back(t);
    }
    const fixed policy{set};
    policy.check_tensors(tensors, tensors); // must not throw
    if (tensors.empty()) return;
    auto resized = tensors;
    resized.back().size += 1;
    resized.back().elements += 1;
    bool refused = false;
    try {
        policy.check_tensors(resized, resized);
    } catch (const childtune::error&) {
        refused = true;
    }
    fuzz::require(refused, "a fixed mask served a tensor of another size");
    const std::vector<tensor_info> fewer(tensors.begin(), tensors.end() - 1);
    refused = false;
    try {
        policy.check_tensors(fewer, fewer);
    } catch (const childtune::error&) {
        refused = true;
    }
    fuzz::require(refused, "a fixed mask with an entry for a missing tensor was accepted");
}

bool load_and_check(const std::string& file) {
    std::istringstream in(file);
    mask_set set;
    try {
        set = mask_set::load(in);
    } catch (const childtune::error&) {
        return false;
    }
    std::set<std::string> names;
    std::size_t size = 0, kept = 0;
    for (const auto& e : set.entries()) {
        fuzz::require(!e.name.empty(), "a loaded mask has an empty name");
        fuzz::require(names.insert(e.name).second, "a loaded mask set names a tensor twice");
        fuzz::require(set.find(e.name) == &e.mask, "find() does not return the loaded entry");
        const std::size_t count = e.mask.count();
        fuzz::require(count <= e.mask.size(), "a loaded mask keeps more elements than it has");
        std::size_t by_hand = 0;
        for (std::size_t i = 0; i < e.mask.size(); ++i) by_hand += e.mask.test(i) ? 1 : 0;
        fuzz::require(by_hand == count, "a loaded mask has bits set past its end (count() disagrees with test())");
        size += e.mask.size();
        kept += count;
    }
    fuzz::require(set.total_size() == size && set.total_kept() == kept, "totals disagree with the entries");
    const std::string again = saved(set);
    fuzz::require(again == file, "an accepted mask file does not save back to the same bytes");
    std::istringstream in2(again);
    fuzz::require(mask_set::load(in2) == set, "a loaded mask set does not survive save/load unchanged");
    check_against_models(set);
    return true;
}

fuzz::seed_map make_seeds() {
    fuzz::seed_map seeds;
    seeds["valid-empty"] = fuzz::frame(0, saved(mask_set{}));
    mask_set set;
    bit_mask a(67), b(64), c(1), d(0);
    for (std::size_t i = 0; i < 67; i += 3) a.set(i, true);
    for (std::size_t i = 0; i < 64; ++i) b.set(i, i % 5 != 0);
    c.set(0, true);
    set.add("encoder.layer.0.attention.self.query.weight", a);
    set.add("encoder.layer.0.output.dense.bias", b);
    set.add("one", c);
    set.add("empty", d);
    seeds["valid-four-tensors"] = fuzz::frame(0, saved(set));
    return seeds;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::seed_hooks(make_seeds, [](const std::string& framed) {
        return load_and_check(fuzz::unframe(reinterpret_cast<const std::uint8_t*>(framed.data()), framed.size()).file);
    });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    load_and_check(fuzz::unframe(data, size).file);
    return 0;
}
