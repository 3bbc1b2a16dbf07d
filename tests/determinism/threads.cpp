// Determinism across thread counts: the same training run stepped on the serial
// backend and on OpenMP teams of 1, 2 and 8 threads (8 oversubscribes a small CI
// machine on purpose: threads are preempted mid-chunk and finish out of order)
// gives bit-identical parameters after every step and byte-identical state files,
// for every update rule and mask mode. The Fisher scores, the Child-Tuning_D
// threshold and the masks are likewise the same bits on every team size.

#include "determinism/model.hpp"

#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace childtune;
using determinism::tensor_spec;
using determinism::tensors;

namespace {

//! 1.27 M elements: well above the optimizer's parallel threshold (2^17), so
//! the OpenMP backends really split the step (the 1 M tensor alone is 16 work
//! items of 2^16), and the Fisher norm spans 16 blocks. Odd sizes put ragged ends
//! inside 64-element keep words and inside SIMD vectors.
const std::vector<tensor_spec> specs = {
    {"embed.w", dtype::float32, 1000, false},   {"layer.0.w", dtype::float32, 1000003, true},
    {"layer.0.b", dtype::float32, 7, true},     {"layer.1.w", dtype::bfloat16, 131149, true},
    {"layer.1.b", dtype::bfloat16, 1, true},    {"layer.2.w", dtype::float64, 65600, true},
    {"layer.2.b", dtype::float64, 63, true},    {"head.w", dtype::float64, 1000, false},
};
constexpr int steps = 3;

//! The gradients of every step, made once and shared by every run.
const std::vector<tensors>& step_gradients() {
    static const std::vector<tensors> g = [] {
        std::vector<tensors> out;
        for (int t = 0; t < steps; ++t) out.emplace_back(specs, 100 + static_cast<std::uint64_t>(t), 0.1);
        return out;
    }();
    return g;
}

//! Child-Tuning_D masks: the reference pipeline (Fisher scores, percentile cut at
//! p_D = 0.3), computed once on the serial backend.
const mask_set& fisher_masks() {
    static const mask_set m =
        determinism::fisher_scores<float>(specs, 2, determinism::reference_fisher(2), serial_backend{}).select(0.3).masks;
    return m;
}

//! The four ways of running a step, in the order of the replicas.
constexpr std::array<int, 3> team_sizes = {1, 2, 8};
const char* const backend_names[] = {"serial", "openmp{1}", "openmp{2}", "openmp{8}"};

template <class Rule>
step_result step_on(optimizer<Rule>& opt, std::size_t replica) {
    if (replica == 0) return opt.step(serial_backend{});
    return opt.step(openmp_backend{team_sizes[replica - 1]});
}

double lr_at(double base, int step) { return base * (1.0 - 0.1 * step); } //!< a scheduler's decay

//! Four replicas of one run (same initial parameters, gradients, options, mask),
//! each stepped on its own backend; after every step all four must hold the same
//! bits, and at the end the same state file.
template <class Rule>
void check_thread_counts(const typename Rule::options& o, const mask_mode& mode, optimizer_options options = {}) {
    const tensors initial(specs, 1, 1.0);
    tensors g = step_gradients()[0];
    std::vector<tensors> w(4, initial);
    std::vector<std::unique_ptr<optimizer<Rule>>> opt;
    for (std::size_t r = 0; r < 4; ++r) {
        opt.push_back(std::make_unique<optimizer<Rule>>(mode, options));
        determinism::attach(*opt[r], specs, w[r], g, o);
    }
    for (int t = 0; t < steps; ++t) {
        g.assign(step_gradients()[static_cast<std::size_t>(t)]);
        for (std::size_t r = 0; r < 4; ++r) {
            opt[r]->set_lr(0, lr_at(o.lr, t));
            REQUIRE(step_on(*opt[r], r));
        }
        for (std::size_t r = 1; r < 4; ++r) {
            INFO("step " << t << ": " << backend_names[r] << " against serial");
            REQUIRE(determinism::first_difference(specs, w[0], w[r]) == "");
        }
    }
    REQUIRE(determinism::first_difference(specs, w[0], initial) != ""); // it trained
    const std::string state = determinism::saved(*opt[0]);
    REQUIRE(state.size() > 500000); // 8-bit compact Child-Tuning_D state: 0.8 MB
    for (std::size_t r = 1; r < 4; ++r) {
        INFO(backend_names[r] << " against serial");
        REQUIRE(determinism::byte_difference(determinism::saved(*opt[r]), state) == "");
    }
}

const std::vector<mask_mode>& modes() {
    static const std::vector<mask_mode> m = {dense{}, bernoulli{0.3, 0x5EED}, fixed{fisher_masks()}};
    return m;
}
const char* const mode_names[] = {"dense", "Child-Tuning_F", "Child-Tuning_D"};

std::string mask_file(const mask_set& m) {
    std::ostringstream out;
    m.save(out);
    return out.str();
}

} // namespace

TEST_CASE("the OpenMP backends run the steps on as many threads as asked", "[determinism][threads]") {
#if defined(_OPENMP)
    //! Guards the premise of this file: a team of 8 on a 2-core machine is really 8
    //! threads (no OMP_DYNAMIC shrinking it), so the other cases do interleave.
    for (const int n : team_sizes) {
        int team = 0;
        openmp_backend{n}.parallel_for(64, [&](std::size_t i) {
            if (i == 0) team = omp_get_num_threads();
        });
        CHECK(team == n);
    }
#else
    WARN("built without OpenMP: openmp_backend runs serially and this file compares serial runs only");
#endif
}

TEST_CASE("AdamW steps are bit-identical on 1, 2 and 8 threads", "[determinism][threads]") {
    SECTION("both flavours, every mask mode") {
        for (const auto flavour : {adamw_flavour::torch, adamw_flavour::legacy})
            for (std::size_t m = 0; m < modes().size(); ++m) {
                INFO("flavour " << (flavour == adamw_flavour::torch ? "torch" : "legacy") << ", " << mode_names[m]);
                check_thread_counts<adamw>(
                    {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .weight_decay = 0.01, .flavour = flavour}, modes()[m]);
            }
    }
    SECTION("compact Child-Tuning_D state") {
        check_thread_counts<adamw>({.lr = 1e-2, .flavour = adamw_flavour::legacy}, modes()[2],
                                   {.compact_fixed_state = true});
    }
    SECTION("8-bit blockwise state, Child-Tuning_F") {
        check_thread_counts<adamw>({.lr = 1e-2, .weight_decay = 0.01}, modes()[1],
                                   {.storage = state_storage::blockwise8});
    }
    SECTION("8-bit blockwise state in the compact Child-Tuning_D layout") {
        check_thread_counts<adamw>({.lr = 1e-2, .flavour = adamw_flavour::legacy}, modes()[2],
                                   {.compact_fixed_state = true, .storage = state_storage::blockwise8});
    }
    SECTION("double state for every tensor, mask on the update, masked entries not decayed") {
        check_thread_counts<adamw>({.lr = 1e-2, .weight_decay = 0.1}, modes()[1],
                                   {.masking = {mask_target::update, false}, .precision = state_precision::float64});
    }
}

TEST_CASE("Adam steps are bit-identical on 1, 2 and 8 threads", "[determinism][threads]") {
    for (std::size_t m = 0; m < modes().size(); ++m) {
        INFO(mode_names[m]);
        check_thread_counts<adam>({.lr = 1e-2, .weight_decay = 1e-3}, modes()[m]);
    }
}

TEST_CASE("SGD with momentum steps are bit-identical on 1, 2 and 8 threads", "[determinism][threads]") {
    for (std::size_t m = 0; m < modes().size(); ++m) {
        INFO(mode_names[m]);
        check_thread_counts<sgd>({.lr = 1e-2, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-4},
                                 modes()[m]);
    }
}

TEST_CASE("the NaN/Inf scan names the same tensor on every thread count", "[determinism][threads]") {
    //! Two bad gradients in different work items; the report must be the first
    //! tensor in registration order, whichever thread scans which item first.
    const tensors initial(specs, 1, 1.0);
    tensors g = step_gradients()[0];
    std::get<std::vector<double>>(g.t[5])[65599] = std::numeric_limits<double>::infinity();
    std::get<std::vector<bfloat16>>(g.t[3])[131148] = bfloat16(std::numeric_limits<float>::quiet_NaN());
    for (std::size_t r = 0; r < 4; ++r) {
        INFO(backend_names[r]);
        tensors w = initial;
        optimizer<adamw> opt(bernoulli{0.3, 1}, {.on_nonfinite = nonfinite_policy::skip});
        determinism::attach(opt, specs, w, g, {});
        const step_result result = step_on(opt, r);
        CHECK_FALSE(result.applied);
        CHECK(result.nonfinite_tensor == "layer.1.w");
        CHECK(determinism::first_difference(specs, w, initial) == "");
        CHECK(opt.step_count() == 0);
    }
}

TEST_CASE("Fisher scores, the top-p threshold and the masks are bit-identical on 1, 2 and 8 threads",
          "[determinism][threads][fisher]") {
    //! Both score types, and both ways of averaging: the reference's (clipping,
    //! N known: g²/N added per batch) and N unknown (sums divided when read).
    const auto check = [](auto score, fisher_options options) {
        using Score = decltype(score);
        const auto serial = determinism::fisher_scores<Score>(specs, 3, options, serial_backend{});
        std::vector<top_p_result> reference;
        for (const auto rule : {selection_rule::percentile, selection_rule::exact_count})
            reference.push_back(serial.select(0.3, rule, serial_backend{}));
        REQUIRE(reference[1].kept == static_cast<std::size_t>(std::llround(0.3 * 1196823.0)));
        for (const int n : team_sizes) {
            INFO(n << " threads");
            const openmp_backend team{n};
            const auto acc = determinism::fisher_scores<Score>(specs, 3, options, team);
            for (const auto& s : specs)
                if (s.masked) {
                    INFO(s.name);
                    const auto a = serial.raw_scores(s.name), b = acc.raw_scores(s.name);
                    REQUIRE(std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
                }
            std::size_t i = 0;
            for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
                const top_p_result r = acc.select(0.3, rule, team);
                CHECK(std::bit_cast<std::uint64_t>(r.threshold) == std::bit_cast<std::uint64_t>(reference[i].threshold));
                CHECK(r.kept == reference[i].kept);
                CHECK(determinism::byte_difference(mask_file(r.masks), mask_file(reference[i].masks)) == "");
                ++i;
            }
        }
    };
    SECTION("float scores, reference setting") { check(float{}, determinism::reference_fisher(3)); }
    SECTION("double scores, N unknown, no clipping") { check(double{}, fisher_options{}); }
}
