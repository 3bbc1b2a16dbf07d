// Determinism across save/resume: a run checkpointed after any of its K steps and
// resumed in a fresh optimizer (built as a new process would build it: default
// hyperparameters, dense mode, new parameter memory holding the checkpointed
// values) ends with the same parameter bits and the same state file bytes as the
// run that never stopped; so does a run that is checkpointed and resumed after
// every single step.

#include "determinism/model.hpp"

#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace childtune;
using determinism::tensor_spec;
using determinism::tensors;

namespace {

//! 137 k elements, just above the optimizer's parallel threshold (2^17), so the
//! default backend splits the steps over OpenMP threads here too.
const std::vector<tensor_spec> specs = {
    {"embed.w", dtype::float32, 300, false},   {"layer.0.w", dtype::float32, 70001, true},
    {"layer.0.b", dtype::float32, 7, true},    {"layer.1.w", dtype::bfloat16, 65537, true},
    {"layer.1.b", dtype::bfloat16, 1, true},   {"layer.2.w", dtype::float64, 1000, true},
    {"head.w", dtype::float64, 130, false},
};
constexpr int K = 6;

const std::vector<tensors>& step_gradients() {
    static const std::vector<tensors> g = [] {
        std::vector<tensors> out;
        for (int t = 0; t < K; ++t) out.emplace_back(specs, 200 + static_cast<std::uint64_t>(t), 0.1);
        return out;
    }();
    return g;
}

const mask_set& fisher_masks() {
    static const mask_set m =
        determinism::fisher_scores<float>(specs, 2, determinism::reference_fisher(2), serial_backend{}).select(0.25).masks;
    return m;
}

double lr_at(double base, int step) { return base * (1.0 - 0.1 * step); } //!< a scheduler's decay

//! Steps [from, to) of the run: the scheduler sets the masked group's learning
//! rate, the step's gradients arrive, the optimizer steps.
template <class Rule>
void run_steps(optimizer<Rule>& opt, tensors& g, double base_lr, int from, int to) {
    for (int t = from; t < to; ++t) {
        g.assign(step_gradients()[static_cast<std::size_t>(t)]);
        opt.set_lr(0, lr_at(base_lr, t));
        REQUIRE(opt.step());
    }
}

//! A unique file name in the system's temporary directory, removed on scope exit.
struct temp_file {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("childtune_determinism_" + std::to_string(::getpid()) + ".state");
    ~temp_file() {
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
};
std::string file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct resume_case {
    const char* name;
    mask_mode mode;
    optimizer_options options;       //!< the run's options
    optimizer_options fresh_options; //!< what the resuming process constructs with
    //! Whether a run resumed from the step-0 checkpoint (no state yet) writes the
    //! straight run's state file. Not when the resuming process leaves out
    //! compact_fixed_state: a file without state cannot carry that option, so the
    //! resumed run keeps full state (same parameters, a different file).
    bool state_from_step_0 = true;
};

template <class Rule>
void check_resume(const typename Rule::options& o, const resume_case& c) {
    INFO(c.name);
    const tensors initial(specs, 2, 1.0);

    // The straight run, and its parameters after each step.
    std::vector<tensors> at{initial};
    std::string final_state;
    {
        tensors w = initial, g = step_gradients()[0];
        optimizer<Rule> opt(c.mode, c.options);
        determinism::attach(opt, specs, w, g, o);
        for (int t = 0; t < K; ++t) {
            run_steps(opt, g, o.lr, t, t + 1);
            at.push_back(w);
        }
        final_state = determinism::saved(opt);
    }
    REQUIRE(determinism::first_difference(specs, at[K], initial) != ""); // it trained

    // A fresh optimizer as a resuming process builds it: it knows the parameter
    // set, nothing else (hyperparameters, mask and step counts come from the file).
    const auto fresh = [&](tensors& w, const tensors& g) {
        auto opt = std::make_unique<optimizer<Rule>>(dense{}, c.fresh_options);
        determinism::attach(*opt, specs, w, g, typename Rule::options{});
        return opt;
    };

    for (int k = 0; k <= K; ++k) {
        INFO("checkpoint after step " << k);
        const bool via_file = k == K / 2;
        temp_file file;
        std::string checkpoint;
        {
            tensors w = initial, g = step_gradients()[0];
            optimizer<Rule> first(c.mode, c.options);
            determinism::attach(first, specs, w, g, o);
            run_steps(first, g, o.lr, 0, k);
            REQUIRE(determinism::first_difference(specs, w, at[static_cast<std::size_t>(k)]) == "");
            checkpoint = determinism::saved(first);
            if (via_file) {
                first.save(file.path.string());
                REQUIRE(determinism::byte_difference(file_bytes(file.path), checkpoint) == "");
            }
        }
        tensors w = at[static_cast<std::size_t>(k)], g = step_gradients()[0]; // new memory, same values
        auto second = fresh(w, g);
        if (via_file) {
            second->load(file.path.string());
        } else {
            std::istringstream in(checkpoint);
            second->load(in);
        }
        REQUIRE(second->step_count() == static_cast<std::uint64_t>(k));
        REQUIRE(determinism::byte_difference(determinism::saved(*second), checkpoint) == "");
        run_steps(*second, g, o.lr, k, K);
        REQUIRE(determinism::first_difference(specs, w, at[K]) == "");
        if (k > 0 || c.state_from_step_0)
            REQUIRE(determinism::byte_difference(determinism::saved(*second), final_state) == "");
    }

    { // checkpointed and resumed after every step
        tensors w = initial, g = step_gradients()[0];
        std::string checkpoint;
        {
            optimizer<Rule> first(c.mode, c.options);
            determinism::attach(first, specs, w, g, o);
            checkpoint = determinism::saved(first);
        }
        for (int t = 0; t < K; ++t) {
            tensors moved = w; // every process gets its own parameter memory
            auto opt = fresh(moved, g);
            std::istringstream in(checkpoint);
            opt->load(in);
            run_steps(*opt, g, o.lr, t, t + 1);
            checkpoint = determinism::saved(*opt);
            w.assign(moved);
        }
        REQUIRE(determinism::first_difference(specs, w, at[K]) == "");
        if (c.state_from_step_0) REQUIRE(determinism::byte_difference(checkpoint, final_state) == "");
    }
}

} // namespace

TEST_CASE("AdamW resumes bit-identically from a checkpoint after any step", "[determinism][resume]") {
    const adamw::options torch_flavour{.lr = 1e-2, .beta2 = 0.99, .weight_decay = 0.01};
    const adamw::options legacy{.lr = 1e-2, .beta2 = 0.99, .weight_decay = 0.01, .flavour = adamw_flavour::legacy};
    SECTION("dense") { check_resume<adamw>(torch_flavour, {"dense", dense{}, {}, {}}); }
    SECTION("Child-Tuning_F") { check_resume<adamw>(legacy, {"Child-Tuning_F", bernoulli{0.2, 0xC0FFEE}, {}, {}}); }
    SECTION("Child-Tuning_D") { check_resume<adamw>(torch_flavour, {"Child-Tuning_D", fixed{fisher_masks()}, {}, {}}); }
    SECTION("Child-Tuning_D, compact state") {
        check_resume<adamw>(legacy, {"Child-Tuning_D compact", fixed{fisher_masks()}, {.compact_fixed_state = true},
                                     {.compact_fixed_state = true}});
    }
    SECTION("Child-Tuning_D, compact state resumed by an optimizer built without the option") {
        //! The state file says which tensors hold compact state; the resuming
        //! process need not repeat the option.
        check_resume<adamw>(legacy, {"Child-Tuning_D compact, resumed plain", fixed{fisher_masks()},
                                     {.compact_fixed_state = true}, {}, false});
    }
}

TEST_CASE("SGD with momentum resumes bit-identically from a checkpoint after any step", "[determinism][resume]") {
    //! SGD's first step copies the gradient into a fresh momentum buffer; a
    //! checkpoint taken before that step (k = 0) must not change that.
    const sgd::options o{.lr = 1e-2, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-4};
    SECTION("dense") { check_resume<sgd>(o, {"dense", dense{}, {}, {}}); }
    SECTION("Child-Tuning_F") { check_resume<sgd>(o, {"Child-Tuning_F", bernoulli{0.3, 9}, {}, {}}); }
    SECTION("Child-Tuning_D") { check_resume<sgd>(o, {"Child-Tuning_D", fixed{fisher_masks()}, {}, {}}); }
}
