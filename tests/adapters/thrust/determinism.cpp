// Determinism across systems: the whole Child-Tuning pipeline (Fisher scores,
// top-p mask, optimizer steps, state file) run by the core on the CPU and by the
// Thrust adapter on this program's system (CPP, or OMP with teams of 1, 2 and 8
// threads) gives the same bits: scores, masks, parameters after every step, and
// the state file byte for byte.
//
// Only the CPU systems: a CUDA build contracts multiply-adds unless --fmad=false
// (docs/reliability.md, "Determinism"), so this file has no .cu wrapper.

#include "adapters/thrust/host_copy.hpp"

#include "determinism/model.hpp"

#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/adamw.hpp>

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
#include <omp.h>
#endif

// Using-declarations, not `using namespace childtune` (see step.cpp).
using childtune::adamw;
using childtune::bernoulli;
using childtune::dense;
using childtune::fixed;
using childtune::mask_set;
namespace ct = ::childtune::thrust;

namespace {

//! 270 k elements: the core optimizer splits the step over OpenMP threads, the
//! Fisher norm of layer.0.w spans 4 blocks, and odd sizes end inside keep words.
const std::vector<std::pair<std::string, std::size_t>> run_shapes = {
    {"embed.w", 1000}, {"layer.0.w", 200003}, {"layer.0.b", 7}, {"layer.1.w", 65537}, {"layer.1.b", 1}, {"head.w", 130}};
bool masked(const std::string& name) { return name.rfind("layer", 0) == 0; }
constexpr int steps = 4;
constexpr int fisher_batches = 2;

//! Element i of tensor k of gradient stream s (determinism/model.hpp's hash).
std::vector<float> values(std::uint64_t stream, std::size_t k, std::size_t n, double scale, bool zeros = false) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = zeros && i % 13 == 0 ? 0.0f : static_cast<float>(scale * determinism::noise(stream * 1000 + k, i));
    return v;
}

using childtune_thrust_test::same_bits;
using childtune_thrust_test::to_host;
std::string mask_file(const mask_set& m) {
    std::ostringstream out;
    m.save(out);
    return out.str();
}

//! The core's run, computed once: its Child-Tuning_D masks, and per mask mode the
//! parameters after every step and the final state file.
struct core_run {
    std::vector<std::vector<float>> fisher_scores; // per masked tensor
    mask_set masks;
    std::vector<std::vector<std::vector<std::vector<float>>>> params; // [mode][step][tensor]
    std::vector<std::string> state;                                   // [mode]
};

const adamw::options layer_options{.lr = 1e-2, .beta2 = 0.99, .weight_decay = 0.01,
                                   .flavour = childtune::adamw_flavour::legacy};
const adamw::options head_options{.lr = 1e-1, .weight_decay = 0.0};

std::vector<childtune::mask_mode> core_modes(const mask_set& masks) {
    return {dense{}, bernoulli{0.3, 0xD15C}, fixed{masks}};
}

const core_run& core() {
    static const core_run run = [] {
        core_run r;
        childtune::fisher_accumulator<float> acc(determinism::reference_fisher(fisher_batches));
        for (const auto& [name, size] : run_shapes)
            if (masked(name)) acc.add_tensor(name, size);
        for (int b = 0; b < fisher_batches; ++b) {
            for (std::size_t k = 0; k < run_shapes.size(); ++k)
                if (masked(run_shapes[k].first))
                    acc.accumulate(run_shapes[k].first, values(500 + static_cast<std::uint64_t>(b), k, run_shapes[k].second, 0.1, true));
            acc.end_batch();
        }
        for (const auto& [name, size] : run_shapes)
            if (masked(name)) r.fisher_scores.emplace_back(acc.raw_scores(name).begin(), acc.raw_scores(name).end());
        r.masks = acc.select(0.3).masks;

        for (const auto& mode : core_modes(r.masks)) {
            std::vector<std::vector<float>> w, g;
            childtune::optimizer<adamw> opt(mode);
            opt.add_group("layers", layer_options, true);
            opt.add_group("head", head_options, false);
            for (std::size_t k = 0; k < run_shapes.size(); ++k) {
                w.push_back(values(1, k, run_shapes[k].second, 1.0));
                g.emplace_back(run_shapes[k].second);
            }
            for (std::size_t k = 0; k < run_shapes.size(); ++k) opt.add_parameter(masked(run_shapes[k].first) ? 0 : 1, run_shapes[k].first, w[k], g[k]);
            r.params.emplace_back();
            for (int t = 0; t < steps; ++t) {
                for (std::size_t k = 0; k < run_shapes.size(); ++k) { // into the registered memory
                    const auto v = values(100 + static_cast<std::uint64_t>(t), k, run_shapes[k].second, 0.1);
                    std::copy(v.begin(), v.end(), g[k].begin());
                }
                opt.step();
                r.params.back().push_back(w);
            }
            r.state.push_back(determinism::saved(opt));
        }
        return r;
    }();
    return run;
}

//! The same pipeline on the Thrust system, checked against the core's as it goes.
void check_device_run() {
    const core_run& expected = core();

    ct::fisher_accumulator<float> acc(determinism::reference_fisher(fisher_batches));
    for (const auto& [name, size] : run_shapes)
        if (masked(name)) acc.add_tensor(name, size);
    for (int b = 0; b < fisher_batches; ++b) {
        for (std::size_t k = 0; k < run_shapes.size(); ++k)
            if (masked(run_shapes[k].first)) {
                const ::thrust::device_vector<float> g =
                    values(500 + static_cast<std::uint64_t>(b), k, run_shapes[k].second, 0.1, true);
                acc.accumulate(::thrust::device, run_shapes[k].first, ::thrust::raw_pointer_cast(g.data()), g.size());
            }
        acc.end_batch();
    }
    std::size_t m = 0;
    for (const auto& [name, size] : run_shapes)
        if (masked(name)) {
            INFO("Fisher scores of " << name);
            std::vector<float> s(size);
            ::thrust::copy(::thrust::device_pointer_cast(acc.raw_scores(name)),
                           ::thrust::device_pointer_cast(acc.raw_scores(name)) + static_cast<std::ptrdiff_t>(size), s.begin());
            REQUIRE(same_bits(s, expected.fisher_scores[m++]));
        }
    ct::device_top_p_result selected = acc.select(::thrust::device, 0.3);
    REQUIRE(determinism::byte_difference(mask_file(selected.masks.download(::thrust::device)), mask_file(expected.masks)) == "");

    const std::vector<ct::device_mask_mode> modes = {dense{}, bernoulli{0.3, 0xD15C}, std::move(selected.masks)};
    const char* const names[] = {"dense", "Child-Tuning_F", "Child-Tuning_D"};
    for (std::size_t mode = 0; mode < modes.size(); ++mode) {
        INFO(names[mode]);
        std::vector<::thrust::device_vector<float>> w, g;
        ct::optimizer<adamw> opt;
        opt.add_group("layers", layer_options, true);
        opt.add_group("head", head_options, false);
        for (std::size_t k = 0; k < run_shapes.size(); ++k) {
            w.emplace_back(values(1, k, run_shapes[k].second, 1.0));
            g.emplace_back(run_shapes[k].second);
        }
        for (std::size_t k = 0; k < run_shapes.size(); ++k)
            opt.add_parameter(::thrust::device, masked(run_shapes[k].first) ? 0 : 1, run_shapes[k].first, w[k], g[k]);
        opt.set_mask(modes[mode]);
        for (int t = 0; t < steps; ++t) {
            for (std::size_t k = 0; k < run_shapes.size(); ++k) {
                const auto v = values(100 + static_cast<std::uint64_t>(t), k, run_shapes[k].second, 0.1);
                ::thrust::copy(v.begin(), v.end(), g[k].begin());
            }
            opt.step(::thrust::device);
            for (std::size_t k = 0; k < run_shapes.size(); ++k) {
                INFO("step " << t << ", tensor " << run_shapes[k].first);
                REQUIRE(same_bits(to_host(w[k]), expected.params[mode][static_cast<std::size_t>(t)][k]));
            }
        }
        std::ostringstream state;
        opt.save(::thrust::device, state);
        REQUIRE(determinism::byte_difference(state.str(), expected.state[mode]) == "");
    }
}

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
//! Records the size of the team that runs a Thrust algorithm.
struct team_probe {
    int* team;
    void operator()(int i) const {
        if (i == 0) *team = omp_get_num_threads();
    }
};
#endif

} // namespace

TEST_CASE("the Thrust system reproduces the core's Child-Tuning run bit for bit", "[thrust][determinism]") {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
    //! Thrust's OMP algorithms take the team size from omp_set_num_threads; 8 on a
    //! 2-core machine oversubscribes it on purpose.
    const int before = omp_get_max_threads();
    for (const int threads : {1, 2, 8}) {
        INFO(threads << " OpenMP threads");
        omp_set_num_threads(threads);
        int team = 0;
        ::thrust::for_each(::thrust::device, ::thrust::counting_iterator<int>(0), ::thrust::counting_iterator<int>(1000),
                           team_probe{&team});
        CHECK(team == threads);
        check_device_run();
    }
    omp_set_num_threads(before);
#else
    check_device_run();
#endif
}
