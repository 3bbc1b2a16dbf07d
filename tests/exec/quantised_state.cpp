// 8-bit blockwise optimizer state (optimizer_options::storage): its size, its
// agreement with fp32 state over a training run, its combination with the
// compact Child-Tuning_D layout, save/load, and what is refused.

#include <childtune/exec/quantised_state.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>

#include "support/error_matcher.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace childtune;
using test_support::error_with;

namespace {

constexpr std::size_t n_elements = 3000; // 12 blocks, the last one ragged

const mask_set& fixed_masks() {
    static const mask_set m = [] {
        bit_mask b(n_elements);
        std::mt19937 rng(5);
        for (std::size_t i = 0; i < n_elements; ++i) b.set(i, rng() % 10 < 3);
        mask_set s;
        s.add("w", std::move(b));
        return s;
    }();
    return m;
}

//! A noisy quadratic: f(p) = sum a_i (p_i - t_i)^2 / 2, gradients a (p - t) plus
//! noise of a tenth of the initial gradient's scale (the same noise for every run).
struct quadratic {
    std::vector<float> a, t;
    std::vector<std::vector<float>> noise;
    explicit quadratic(int steps) : a(n_elements), t(n_elements) {
        std::mt19937 rng(7);
        std::normal_distribution<float> normal;
        for (std::size_t i = 0; i < n_elements; ++i) {
            a[i] = 0.5f + 0.3f * static_cast<float>(i % 7);
            t[i] = normal(rng);
        }
        for (int s = 0; s < steps; ++s) {
            noise.emplace_back(n_elements);
            for (auto& x : noise.back()) x = 0.1f * normal(rng);
        }
    }
    void gradient(const std::vector<float>& p, std::vector<float>& g, int step) const {
        for (std::size_t i = 0; i < n_elements; ++i) g[i] = a[i] * (p[i] - t[i]) + noise[static_cast<std::size_t>(step)][i];
    }
    double loss(const std::vector<float>& p) const {
        double f = 0.0;
        for (std::size_t i = 0; i < n_elements; ++i) f += 0.5 * a[i] * (static_cast<double>(p[i]) - t[i]) * (static_cast<double>(p[i]) - t[i]);
        return f;
    }
};

double distance(const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) s += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    return std::sqrt(s);
}

struct divergence {
    double worst_relative = 0.0; //!< max over steps of |p8 - p32| / |p32 - p0|
    double loss32 = 0.0, loss8 = 0.0, loss0 = 0.0;
};

//! 100 steps with fp32 state and with 8-bit state from the same start.
template <class Rule>
divergence run_pair(const typename Rule::options& o, const mask_mode& mode, bool compact = false, int steps = 100) {
    const quadratic q(steps);
    std::vector<float> p32(n_elements, 0.0f), p8(n_elements, 0.0f), g32(n_elements), g8(n_elements);
    optimizer<Rule> full(mode, {.compact_fixed_state = compact});
    optimizer<Rule> small(mode, {.compact_fixed_state = compact, .storage = state_storage::blockwise8});
    full.add_group("g", o);
    small.add_group("g", o);
    full.add_parameter(0, "w", p32, g32);
    small.add_parameter(0, "w", p8, g8);
    divergence d;
    d.loss0 = q.loss(p32);
    const std::vector<float> p0 = p32;
    for (int s = 0; s < steps; ++s) {
        q.gradient(p32, g32, s);
        q.gradient(p8, g8, s);
        REQUIRE(full.step());
        REQUIRE(small.step());
        const double travelled = distance(p32, p0);
        if (travelled > 0.0) d.worst_relative = std::max(d.worst_relative, distance(p8, p32) / travelled);
    }
    d.loss32 = q.loss(p32);
    d.loss8 = q.loss(p8);
    return d;
}

template <class Rule>
void check_bounds(const typename Rule::options& o, double bound, double loss_bound) {
    const mask_mode modes[] = {dense{}, bernoulli{0.3, 0x5EED}, fixed{fixed_masks()}};
    const char* names[] = {"dense", "Child-Tuning_F", "Child-Tuning_D"};
    for (std::size_t m = 0; m < 3; ++m) {
        const divergence d = run_pair<Rule>(o, modes[m]);
        INFO(Rule::name << ", " << names[m] << ": worst relative divergence " << d.worst_relative << ", loss " << d.loss0
                        << " -> fp32 " << d.loss32 << ", 8-bit " << d.loss8);
        CHECK(d.loss32 < 0.9 * d.loss0); // it trained
        CHECK(d.worst_relative <= bound);
        CHECK(std::fabs(d.loss8 - d.loss32) <= loss_bound * (d.loss0 - d.loss32));
    }
}

//! The CPU executor claiming not to keep 8-bit state, as the Thrust and LibTorch ones do.
struct fp32_only_executor : detail::cpu_executor<adamw> {
    static constexpr bool supports_blockwise8 = false;
};

} // namespace

TEST_CASE("8-bit state takes 2 bytes and 1/64 per parameter and buffer, 0.3 of that with compact Child-Tuning_D",
          "[exec][blockwise8]") {
    const std::size_t size = std::size_t{1} << 16; // 256 blocks
    std::vector<float> p(size, 1.0f), g(size, 0.5f);
    bit_mask b(size);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < size; ++i) {
        const bool keep = (i * 2654435761u) % 1000 < 300;
        b.set(i, keep);
        kept += keep ? 1 : 0;
    }
    mask_set masks;
    masks.add("w", b);
    SECTION("AdamW, full layout: 2 x (65536 codes + 256 scales x 4 bytes)") {
        optimizer<adamw> opt(dense{}, {.storage = state_storage::blockwise8});
        opt.add_group("g", {});
        opt.add_parameter(0, "w", p, g);
        REQUIRE(opt.step());
        REQUIRE(opt.state_bytes() == 2 * (65536 + 1024));
        CHECK(static_cast<double>(opt.state_bytes()) / size <= 2.1); // 2.03125
    }
    SECTION("AdamW, compact Child-Tuning_D at p_D = 0.3") {
        optimizer<adamw> opt(fixed{masks}, {.compact_fixed_state = true, .storage = state_storage::blockwise8});
        opt.add_group("g", {});
        opt.add_parameter(0, "w", p, g);
        REQUIRE(opt.step());
        REQUIRE(kept == 19661);
        // Codes of the kept elements (padded to 4 bytes), scales of all 256 blocks.
        REQUIRE(opt.state_bytes() == 2 * (19664 + 1024));
        // With the layout's kept counts (4 bytes per 64 elements, held by the registry).
        const double with_layout = static_cast<double>(opt.state_bytes() + 4 * (size / 64 + 1)) / size;
        CHECK(with_layout <= 0.7); // 0.694
    }
    SECTION("SGD with momentum and Lion: one buffer") {
        optimizer<lion> opt(dense{}, {.storage = state_storage::blockwise8});
        opt.add_group("g", {});
        opt.add_parameter(0, "w", p, g);
        REQUIRE(opt.step());
        REQUIRE(opt.state_bytes() == 65536 + 1024);
    }
}

// The bounds. 8-bit state perturbs each stored moment by at most half a step
// of the dynamic map, relative to its block's absmax: in the top decade
// (values from 0.1 to 1 of the absmax, where the elements that move most lie)
// the signed map's steps are 0.9/64 = 1.4 % of the absmax and the unsigned
// map's 0.9/128 = 0.7 %, so an element at a tenth of the absmax carries up to
// 7 % (m) and 3.5 % (v) relative error, an element at the absmax 0.7 % and
// 0.35 %. Adam's step m / sqrt(v) thus errs by a few percent of itself per
// element and step, with signs that vary between elements and steps, and on a
// strongly convex problem both runs contract towards the same minimum, so the
// trajectories stay apart by a few percent of the distance travelled. Lion
// moves every element by exactly lr in the direction of a sign: near the
// minimum the interpolation it takes the sign of is near 0, quantisation flips
// it and the element moves 2 lr the other way, so its runs separate by more
// (a spread around the same minimum, not a drift). LAMB's trust ratio couples
// every element of a tensor through two norms, which passes the errors on
// to the whole tensor.
//
// Measured on this problem (g++ 12, x86-64, 2026-12-03), worst over 100 steps
// of |p8 - p32| / |p32 - p0|: AdamW 3.4 %, Adam 3.4 %, SGD 1.2 %, LAMB 16.5 %,
// Lion 18 %; final losses apart by at most 0.4 % of the loss decrease (Lion
// 3.7 %). The bounds below leave a margin of about 1.5. LAMB's Child-Tuning_F
// run depends on the mask more than the others: over eight seeds and mask
// definitions 3 and 4 (2026-12-06) its final losses were apart by 0.3-1.9 %
// of the decrease (the 8-bit run ending lower in 14 of 16) and its worst
// divergence was 17.6-22.4 %, hence its loss bound of 3 %.
TEST_CASE("8-bit state follows the fp32 trajectory over 100 steps", "[exec][blockwise8]") {
    SECTION("AdamW, torch flavour") { check_bounds<adamw>({.lr = 1e-2, .weight_decay = 1e-2}, 0.05, 0.01); }
    SECTION("AdamW, legacy flavour") {
        check_bounds<adamw>({.lr = 1e-2, .eps = 1e-6, .weight_decay = 1e-2, .flavour = adamw_flavour::legacy}, 0.05, 0.01);
    }
    SECTION("Adam") { check_bounds<adam>({.lr = 1e-2}, 0.05, 0.01); }
    SECTION("SGD with momentum") { check_bounds<sgd>({.lr = 1e-2, .momentum = 0.9}, 0.02, 0.01); }
    SECTION("Lion") { check_bounds<lion>({.lr = 1e-2}, 0.27, 0.06); }
    SECTION("LAMB") { check_bounds<lamb>({.lr = 1e-1}, 0.25, 0.03); }
}

TEST_CASE("Child-Tuning_F with 8-bit state steps exactly the elements that fp32 state steps", "[exec][blockwise8]") {
    // On the first step a dropped element's gradient is 0, so its moments stay 0
    // and it does not move: the elements that move are the kept ones. The 8-bit
    // windows (1024 elements; n_elements spans three, the last ragged) draw their own keep
    // words, the fp32 pass draws them over the whole range.
    const quadratic q(1);
    for (const std::uint64_t seed : {std::uint64_t{1}, std::uint64_t{0x5EED}, std::uint64_t{77}}) {
        CAPTURE(seed);
        std::vector<float> p32(n_elements, 0.5f), p8(n_elements, 0.5f), g32(n_elements), g8(n_elements);
        optimizer<adamw> full(bernoulli{0.3, seed});
        optimizer<adamw> small(bernoulli{0.3, seed}, {.storage = state_storage::blockwise8});
        full.add_group("g", {.lr = 1e-2, .weight_decay = 0.0});
        small.add_group("g", {.lr = 1e-2, .weight_decay = 0.0});
        full.add_parameter(0, "w", p32, g32);
        small.add_parameter(0, "w", p8, g8);
        q.gradient(p32, g32, 0);
        g8 = g32;
        REQUIRE(full.step());
        REQUIRE(small.step());
        std::size_t moved = 0, differing = 0;
        for (std::size_t i = 0; i < n_elements; ++i) {
            moved += p32[i] != 0.5f;
            differing += (p32[i] != 0.5f) != (p8[i] != 0.5f);
        }
        CHECK(differing == 0);
        CHECK(moved > n_elements / 4); // about 0.3 n_elements: the comparison is not vacuous
        CHECK(moved < n_elements / 3);
    }
}

TEST_CASE("compact Child-Tuning_D 8-bit state equals full 8-bit state bit for bit", "[exec][blockwise8][compact]") {
    // Masked elements' moments stay exactly 0 in the full layout, so each block's
    // absmax, and every kept element's code, are those of the compact layout.
    const quadratic q(20);
    std::vector<float> pf(n_elements, 0.0f), pc(n_elements, 0.0f), gf(n_elements), gc(n_elements);
    optimizer<adamw> full(fixed{fixed_masks()}, {.storage = state_storage::blockwise8});
    optimizer<adamw> compact(fixed{fixed_masks()}, {.compact_fixed_state = true, .storage = state_storage::blockwise8});
    full.add_group("g", {.lr = 1e-2});
    compact.add_group("g", {.lr = 1e-2});
    full.add_parameter(0, "w", pf, gf);
    compact.add_parameter(0, "w", pc, gc);
    for (int s = 0; s < 20; ++s) {
        q.gradient(pf, gf, s);
        q.gradient(pc, gc, s);
        REQUIRE(full.step());
        REQUIRE(compact.step());
        REQUIRE(std::memcmp(pf.data(), pc.data(), n_elements * sizeof(float)) == 0);
    }
    CHECK(compact.state_bytes() < full.state_bytes() / 2);
}

TEST_CASE("8-bit state saves, loads and resumes bit-identically", "[exec][blockwise8][io]") {
    const quadratic q(8);
    for (bool compact : {false, true}) {
        CAPTURE(compact);
        const optimizer_options options{.compact_fixed_state = compact, .storage = state_storage::blockwise8};
        std::vector<float> pa(n_elements, 0.0f), ga(n_elements);
        optimizer<adamw> a(fixed{fixed_masks()}, options);
        a.add_group("g", {.lr = 1e-2});
        a.add_parameter(0, "w", pa, ga);
        for (int s = 0; s < 4; ++s) {
            q.gradient(pa, ga, s);
            REQUIRE(a.step());
        }
        std::stringstream file;
        a.save(file);
        // Into an optimizer of the same options, and into one whose options ask
        // for fp32 state: the file's storage wins, as its layout does.
        for (bool same_options : {true, false}) {
            CAPTURE(same_options);
            std::vector<float> pb = pa, gb(n_elements), pa2 = pa, ga2(n_elements);
            optimizer<adamw> b(fixed{fixed_masks()}, same_options ? options : optimizer_options{.compact_fixed_state = compact});
            b.add_group("g", {.lr = 1e-2});
            b.add_parameter(0, "w", pb, gb);
            std::stringstream in(file.str());
            b.load(in);
            REQUIRE(b.state_bytes() == a.state_bytes());
            optimizer<adamw> a2(fixed{fixed_masks()}, options);
            a2.add_group("g", {.lr = 1e-2});
            a2.add_parameter(0, "w", pa2, ga2);
            std::stringstream again(file.str());
            a2.load(again);
            for (int s = 4; s < 8; ++s) {
                q.gradient(pa2, ga2, s);
                q.gradient(pb, gb, s);
                REQUIRE(a2.step());
                REQUIRE(b.step());
            }
            REQUIRE(std::memcmp(pa2.data(), pb.data(), n_elements * sizeof(float)) == 0);
            std::stringstream sa, sb;
            a2.save(sa);
            b.save(sb);
            REQUIRE(sa.str() == sb.str());
        }
    }
}

TEST_CASE("fp32 state files are written as before when no tensor holds 8-bit state", "[exec][blockwise8][io]") {
    std::vector<float> p(n_elements, 1.0f), g(n_elements, 0.5f);
    optimizer<adamw> opt(dense{});
    opt.add_group("g", {});
    opt.add_parameter(0, "w", p, g);
    REQUIRE(opt.step());
    std::stringstream file;
    opt.save(file);
    std::uint32_t version = 0;
    std::memcpy(&version, file.str().data() + 8, 4);
    REQUIRE(version == 1);
}

TEST_CASE("8-bit state refuses what it cannot do", "[exec][blockwise8]") {
    REQUIRE_THROWS_MATCHES((optimizer<adamw>(dense{}, {.precision = state_precision::float64,
                                                       .storage = state_storage::blockwise8})),
                           error, error_with("cannot be combined with state_precision::float64"));
    REQUIRE_THROWS_MATCHES((optimizer<adamw>(dense{}, {.storage = static_cast<state_storage>(7)})), error,
                           error_with("unknown state storage"));
    // An executor without `supports_blockwise8` (the Thrust and LibTorch ones).
    REQUIRE_THROWS_MATCHES((basic_optimizer<adamw, fp32_only_executor>(dense{}, {.storage = state_storage::blockwise8})),
                           error, error_with("does not keep 8-bit blockwise state"));
    REQUIRE_NOTHROW(basic_optimizer<adamw, fp32_only_executor>(dense{}, {}));
}

TEST_CASE("a tensor of double parameters steps with 8-bit float state", "[exec][blockwise8]") {
    std::vector<double> p(700, 1.0), g(700, 0.25);
    optimizer<adamw> opt(bernoulli{0.5, 3}, {.storage = state_storage::blockwise8});
    opt.add_group("g", {.lr = 0.1});
    opt.add_parameter(0, "w", p, g);
    REQUIRE(opt.step());
    REQUIRE(opt.state_bytes() == 2 * (700 + 3 * 4));
    REQUIRE(opt.registry().tensors()[0].state_type == dtype::float32);
    bool moved = false;
    for (double x : p) moved = moved || x != 1.0;
    REQUIRE(moved);
}
