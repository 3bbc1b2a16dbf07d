#include <childtune/io/state_format.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

using childtune::bernoulli;

namespace {
struct run {
    std::vector<float> w = std::vector<float>(1000, 0.5f), g = std::vector<float>(1000);
    childtune::optimizer<childtune::adamw> opt;
    explicit run(const bernoulli& b) : opt(b) {
        const auto group = opt.add_group("encoder", {.lr = 0.01f});
        opt.add_parameter(group, "layer.0.weight", w, g);
    }
    void steps(int first, int count) {
        for (int t = first; t < first + count; ++t) {
            for (std::size_t i = 0; i < g.size(); ++i) g[i] = 0.001f * static_cast<float>((i * 7 + static_cast<std::size_t>(t) * 13) % 29) - 0.01f;
            opt.step();
        }
    }
};

// The file's format version (after the 8-byte magic).
std::uint32_t file_version(const std::string& bytes) {
    std::uint32_t v;
    std::memcpy(&v, bytes.data() + 8, sizeof v);
    return v;
}
} // namespace

TEST_CASE("state files record the Bernoulli definition and resume it bit for bit", "[io][bernoulli]") {
    for (std::uint32_t version : {1u, 2u, 3u}) {
        CAPTURE(version);
        const bernoulli mask{0.3, 11, version};
        run whole(mask);
        whole.steps(0, 6);

        run first(mask);
        first.steps(0, 3);
        std::stringstream file;
        first.opt.save(file);
        // Definition 1 is 0.1's format (version 1, kind 1); definitions 2 and 3 need version 3.
        CHECK(file_version(file.str()) == (version == 1 ? 1u : 3u));

        // Resumed by an optimizer made with the other definition: the file's wins.
        run resumed(bernoulli{0.3, 11, version == 1 ? 2u : 1u});
        resumed.w = first.w;
        resumed.opt.load(file);
        REQUIRE(std::get<bernoulli>(resumed.opt.mask()) == mask);
        resumed.steps(3, 3);
        CHECK(resumed.w == whole.w);
    }
}

TEST_CASE("bad input: a Bernoulli mask with a definition version in a file older than version 3", "[io][bernoulli][bad_input]") {
    std::stringstream out;
    childtune::detail::binary_writer w(out);
    childtune::detail::write_mask(w, childtune::any_mask{bernoulli{0.3, 1, 2}});
    for (std::uint32_t file_version : {1u, 2u}) {
        std::stringstream in(out.str());
        childtune::detail::binary_reader r(in, "test");
        CHECK_THROWS_WITH(childtune::detail::read_mask(r, file_version, {}), Catch::Contains("unknown mask mode"));
    }
    std::stringstream in(out.str());
    childtune::detail::binary_reader r(in, "test");
    const auto m = childtune::detail::read_mask(r, 3, {});
    REQUIRE(m.target<bernoulli>() != nullptr);
    CHECK(*m.target<bernoulli>() == bernoulli{0.3, 1, 2});
    // A recorded definition that this library does not know is refused by name.
    std::stringstream bad_out;
    childtune::detail::binary_writer bw(bad_out);
    bw.value<std::uint8_t>(4);
    bw.value<double>(0.3);
    bw.value<std::uint64_t>(1);
    bw.value<std::uint32_t>(7);
    std::stringstream bad_in(bad_out.str());
    childtune::detail::binary_reader br(bad_in, "test");
    CHECK_THROWS_WITH(childtune::detail::read_mask(br, 3, {}), Catch::Contains("definition version = 7"));
}
