#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/filtered.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/optimizer/summary.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace childtune;

namespace {
struct summary_model {
    std::vector<float> w = std::vector<float>(100, 0.0f), b = std::vector<float>(3, 0.0f), h = std::vector<float>(4, 0.0f);
    std::vector<float> gw = std::vector<float>(100, 1.0f), gb = std::vector<float>(3, 1.0f), gh = std::vector<float>(4, 1.0f);
    void attach(optimizer<sgd>& opt) {
        const auto enc = opt.add_group("encoder", sgd::options{});
        const auto head = opt.add_group("head", sgd::options{}, false);
        opt.add_parameter(enc, "enc.w", w, gw);
        opt.add_parameter(enc, "enc.b", b, gb);
        opt.add_parameter(head, "head.w", h, gh);
    }
};
fixed hand_mask() { // 3 of 100 and 1 of 3 kept
    bit_mask w(100), b(3);
    w.set(0);
    w.set(64);
    w.set(99);
    b.set(2);
    mask_set s;
    s.add("enc.w", w);
    s.add("enc.b", b);
    return fixed{s};
}
} // namespace

TEST_CASE("summary: tensors, elements, policy and kept counts per group, by hand", "[optimizer][summary]") {
    summary_model m;
    optimizer<sgd> opt(hand_mask());
    m.attach(opt);
    optimizer_summary s = summarize(opt);
    REQUIRE(s.groups.size() == 2);
    CHECK(s.steps == 0);
    CHECK(s.groups[0].tensors == 2);
    CHECK(s.groups[0].elements == 103);
    CHECK(s.groups[0].masked);
    CHECK(s.groups[0].policy == "fixed (2 tensors, 4 of 103 kept)");
    CHECK_FALSE(s.groups[0].kept.has_value());
    CHECK_FALSE(s.groups[1].masked);
    CHECK(to_string(s) == "group 'encoder': masked, fixed (2 tensors, 4 of 103 kept), 2 tensors, 103 elements, no step yet\n"
                          "group 'head': dense, 1 tensors, 4 elements, no step yet\n"
                          "  tensor 'enc.w' (group 'encoder'): 100 elements, no step yet\n"
                          "  tensor 'enc.b' (group 'encoder'): 3 elements, no step yet\n"
                          "  tensor 'head.w' (group 'head'): 4 elements, dense, no step yet\n");
    REQUIRE(opt.step());
    s = summarize(opt);
    CHECK(s.steps == 1);
    CHECK(*s.groups[0].kept == 4);
    CHECK(*s.groups[0].kept_fraction() == Approx(4.0 / 103));
    CHECK(*s.groups[1].kept == 4);
    CHECK(*s.tensors[0].kept == 3);
    CHECK(*s.tensors[1].kept == 1);
    CHECK(to_string(s) == "group 'encoder': masked, fixed (2 tensors, 4 of 103 kept), 2 tensors, 103 elements, kept 4 (3.88%) at step 0\n"
                          "group 'head': dense, 1 tensors, 4 elements, kept 4 (100.00%) at step 0\n"
                          "  tensor 'enc.w' (group 'encoder'): 100 elements, kept 3 (3.00%) at step 0\n"
                          "  tensor 'enc.b' (group 'encoder'): 3 elements, kept 1 (33.33%) at step 0\n"
                          "  tensor 'head.w' (group 'head'): 4 elements, dense, kept 4 (100.00%) at step 0\n");
    CHECK_FALSE(summarize(opt, false).groups[0].kept.has_value());
}

TEST_CASE("summary: the kept count of a Bernoulli step equals a naive count of its draws", "[optimizer][summary]") {
    summary_model m;
    const bernoulli policy{0.3, 21};
    optimizer<sgd> opt(policy);
    m.attach(opt);
    for (int k = 0; k < 3; ++k) REQUIRE(opt.step());
    const optimizer_summary s = summarize(opt);
    // Naive: element i of tensor t is kept at step 2 iff the view's keep(i) says so.
    std::size_t expected = 0;
    for (std::size_t t = 0; t < 2; ++t) {
        const auto info = opt.tensor(t);
        const auto v = policy.view(info, 2);
        std::size_t n = 0;
        for (std::size_t i = 0; i < info.elements; ++i) n += v.keep(i) ? 1 : 0;
        CHECK(*s.tensors[t].kept == n);
        expected += n;
    }
    CHECK(*s.groups[0].kept == expected);
    CHECK(s.groups[0].policy == "bernoulli(p=0.3, seed=21)");
    CHECK(expected > 0);
    CHECK(expected < 103);
}

TEST_CASE("summary: a filtered policy counts its dense tensors as fully kept", "[optimizer][summary]") {
    summary_model m;
    optimizer<sgd> opt(filtered{name_filter().include_glob("*.w"), bernoulli{0.5, 3}});
    m.attach(opt);
    REQUIRE(opt.step());
    const optimizer_summary s = summarize(opt);
    CHECK(s.groups[0].policy == "filtered(include glob '*.w') of bernoulli(p=0.5, seed=3)");
    CHECK(*s.tensors[1].kept == 3); // enc.b: not selected, dense
    CHECK(*s.tensors[0].kept < 100);
}
