#include <childtune/mask/filtered.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "support/error_matcher.hpp"

using namespace childtune;

namespace {
using test_support::message_of;
// Three tensors in one masked group; SGD with lr 0.5 and gradients of 1 moves a
// kept element from 0 to -0.5 and leaves a masked-out one at 0.
struct model {
    std::vector<float> w = std::vector<float>(8, 0.0f), b = std::vector<float>(3, 0.0f), h = std::vector<float>(4, 0.0f);
    std::vector<float> gw = std::vector<float>(8, 1.0f), gb = std::vector<float>(3, 1.0f), gh = std::vector<float>(4, 1.0f);
    void attach(optimizer<sgd>& opt) {
        sgd::options o;
        o.lr = 0.5;
        const auto g = opt.add_group("all", o);
        opt.add_parameter(g, "encoder.0.weight", w, gw);
        opt.add_parameter(g, "encoder.0.bias", b, gb);
        opt.add_parameter(g, "head.weight", h, gh);
    }
};
fixed weight_mask() {
    bit_mask m(8);
    m.set(1);
    m.set(6);
    mask_set s;
    s.add("encoder.0.weight", m);
    return fixed{s};
}
} // namespace

TEST_CASE("filter: a filtered policy masks the selected tensors only, the others train densely", "[mask][filtered]") {
    model m;
    optimizer<sgd> opt(dense{});
    m.attach(opt);
    opt.set_mask(filtered{name_filter().include_glob("encoder.*").exclude_glob("*.bias"), weight_mask()});
    REQUIRE(opt.step());
    CHECK(m.w == std::vector<float>{0, -0.5f, 0, 0, 0, 0, -0.5f, 0});
    CHECK(m.b == std::vector<float>(3, -0.5f));
    CHECK(m.h == std::vector<float>(4, -0.5f));

    // Bernoulli inside: the selected tensor draws the same mask as with bernoulli alone.
    model a, b;
    optimizer<sgd> alone(bernoulli{0.5, 9}), inside(dense{});
    a.attach(alone);
    b.attach(inside);
    inside.set_mask(filtered{name_filter().include_regex(R"(encoder\.0\.weight)"), bernoulli{0.5, 9}});
    REQUIRE(alone.step());
    REQUIRE(inside.step());
    CHECK(a.w == b.w);
    CHECK(b.b == std::vector<float>(3, -0.5f));
}

TEST_CASE("filter: a filtered policy that selects nothing, or disagrees with its fixed mask, fails the step and changes nothing",
          "[mask][filtered][bad_input]") {
    model m;
    optimizer<sgd> opt(dense{});
    m.attach(opt);
    opt.set_mask(filtered{name_filter().include_glob("encoder.layr.*"), bernoulli{0.5, 1}});
    CHECK_THAT(message_of([&] { (void)opt.step(); }),
               Catch::Contains("mask filter (include glob 'encoder.layr.*'): include pattern 'encoder.layr.*' matches none of "
                               "the 3 names 'encoder.0.weight', 'encoder.0.bias', 'head.weight'"));
    CHECK(opt.step_count() == 0);
    CHECK(m.w == std::vector<float>(8, 0.0f));

    // The fixed mask holds an entry for a tensor the filter leaves dense.
    mask_set both = weight_mask().masks;
    both.add("head.weight", bit_mask(4, true));
    opt.set_mask(filtered{name_filter().include_glob("encoder.*").exclude_glob("*.bias"), fixed{both}});
    CHECK_THAT(message_of([&] { (void)opt.step(); }),
               Catch::Contains("the fixed mask has an entry for tensor 'head.weight', which the filter leaves dense"));
    // And one missing a selected tensor: the fixed policy's own error.
    opt.set_mask(filtered{name_filter().include_glob("encoder.*").exclude_glob("*.bias"), weight_mask()});
    CHECK_NOTHROW(opt.step());
    CHECK_THAT(message_of([&] { opt.set_mask(filtered{name_filter().include_glob("encoder.*"), weight_mask()}); }),
               Catch::Contains("fixed mask: no mask for tensor 'encoder.0.bias'"));
}

TEST_CASE("filter: a filtered policy is saved in the state file and restored by load", "[mask][filtered]") {
    for (const any_mask& inner : {any_mask(dense{}), any_mask(bernoulli{0.25, 5}), any_mask(weight_mask())}) {
        model m;
        optimizer<sgd> opt(dense{});
        m.attach(opt);
        const filtered policy{name_filter().include_glob("encoder.*").exclude_regex(".*\\.bias"), inner};
        opt.set_mask(policy);
        REQUIRE(opt.step());
        std::stringstream file;
        opt.save(file);

        model m2;
        optimizer<sgd> back(dense{});
        m2.attach(back);
        back.set_mask(filtered{name_filter(), dense{}}); // the type the file holds
        back.load(file);
        const auto* f = back.mask_policy().target<filtered>();
        REQUIRE(f != nullptr);
        CHECK(*f == policy);
        CHECK(back.step_count() == 1);
    }
}
