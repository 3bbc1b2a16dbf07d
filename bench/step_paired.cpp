// Two of the core methods timed in pairs: a ratio that survives a noisy machine.
//
// The targets compare two steps (Child-Tuning_F against the dense step, the
// 8-bit state against fp32 state). Timed as separate benchmarks, seconds apart,
// their ratio moves with whatever else loads the memory bus meanwhile: on a
// shared 2-core machine the dense step alone varied by a third within a session
// (docs/benchmarks.md). Here both optimizers step the same parameters and
// gradients (the problem of the shape), each with its own state, one right
// after the other, in alternating order (a, b, then b, a, ...), and the counters
// are taken pair by pair:
//   ratio          the median over the pairs of b's time / a's time
//   ratio_of_sums  b's total time / a's total time
//   a_ms, b_ms     the median time of one step of each
// The benchmark's own time is that of a pair, and bytes/s counts both steps
// (56 B per parameter, the fp32-state equivalent of each).

#include <childtune/optimizer.hpp>

#include "step_support.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using bench::mode;

//! One side of a pair: a core method's mask mode, optimizer options and (for
//! Child-Tuning_F) Bernoulli mask definition.
struct side {
    mode m;
    childtune::optimizer_options options;
    std::uint32_t mask_version = childtune::bernoulli_default_version;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    if (v.size() % 2 == 1) return *mid;
    return (*mid + *std::max_element(v.begin(), mid)) / 2.0;
}

void paired(benchmark::State& state, const bench::shape& s, side a, side b) {
    // (The problem carries Child-Tuning_D masks when either side needs them.)
    auto& prob = bench::problem_for(s, a.m == mode::ct_d || b.m == mode::ct_d ? mode::ct_d : mode::dense);
    const std::size_t base = bench::begin_memory();
    const auto opt_a = bench::core_optimizer(prob, s, a.m, a.options, a.mask_version);
    const auto opt_b = bench::core_optimizer(prob, s, b.m, b.options, b.mask_version);
    std::vector<double> time_a, time_b;
    const auto step_a = [&] { time_a.push_back(bench::seconds_of([&] { opt_a->step(); })); };
    const auto step_b = [&] { time_b.push_back(bench::seconds_of([&] { opt_b->step(); })); };
    bool a_first = true;
    for (auto _ : state) {
        if (a_first) {
            step_a();
            step_b();
        } else {
            step_b();
            step_a();
        }
        a_first = !a_first;
        state.SetIterationTime(time_a.back() + time_b.back());
    }
    std::vector<double> ratios(time_a.size());
    double sum_a = 0.0, sum_b = 0.0;
    for (std::size_t i = 0; i < ratios.size(); ++i) {
        ratios[i] = time_b[i] / time_a[i];
        sum_a += time_a[i];
        sum_b += time_b[i];
    }
    bench::report(state, s, 56.0, base, bench::core_threads());
    state.counters["ratio"] = median(ratios);
    state.counters["ratio_of_sums"] = sum_a > 0.0 ? sum_b / sum_a : 0.0;
    state.counters["a_ms"] = 1e3 * median(time_a);
    state.counters["b_ms"] = 1e3 * median(time_b);
}

constexpr childtune::optimizer_options fp32_state{.on_nonfinite = childtune::nonfinite_policy::unchecked};
constexpr childtune::optimizer_options state8{.on_nonfinite = childtune::nonfinite_policy::unchecked,
                                              .storage = childtune::state_storage::blockwise8};

// The headline target: Child-Tuning_F (b) against the dense step (a).
void ct_f_vs_dense(benchmark::State& st, const bench::shape& s) {
    paired(st, s, {mode::dense, fp32_state}, {mode::ct_f, fp32_state});
}
// The same with mask definition 2 (16-bit draws), the default before definition 3.
void ct_f_v2_vs_dense(benchmark::State& st, const bench::shape& s) {
    paired(st, s, {mode::dense, fp32_state}, {mode::ct_f, fp32_state, 2});
}
// ... and with definition 3 (Philox bit planes), the default before definition 4.
void ct_f_v3_vs_dense(benchmark::State& st, const bench::shape& s) {
    paired(st, s, {mode::dense, fp32_state}, {mode::ct_f, fp32_state, 3});
}
// Dense AdamW with 8-bit blockwise state (b) against fp32 state (a).
void state8_vs_fp32(benchmark::State& st, const bench::shape& s) {
    paired(st, s, {mode::dense, fp32_state}, {mode::dense, state8});
}

constexpr unsigned everywhere = bench::flat | bench::model;
const bench::add_method m_ct_f_vs_dense{{60, "paired/ct_f_vs_dense", &ct_f_vs_dense, everywhere}};
const bench::add_method m_8bit_vs_fp32{{61, "paired/8bit_vs_fp32_state", &state8_vs_fp32, everywhere}};
const bench::add_method m_ct_f_v2_vs_dense{{62, "paired/ct_f+mask_v2_vs_dense", &ct_f_v2_vs_dense, everywhere}};
const bench::add_method m_ct_f_v3_vs_dense{{63, "paired/ct_f+mask_v3_vs_dense", &ct_f_v3_vs_dense, everywhere}};

} // namespace
