// The fused CPU step (dense AdamW, Child-Tuning_F, Child-Tuning_D) beside a
// stream-triad probe and a plain C++ AdamW loop, all in one binary so the ratios
// are measured under the same load.
//
// fp32 AdamW moves 28 bytes per parameter (read param, grad, m, v; write param,
// m, v); the triad moves 12 bytes per element as STREAM counts them. N defaults
// to 64 Mi parameters; set CHILDTUNE_BENCH_N to change it (CI smoke-tests with a
// small N). Build with the project's defaults: this file is compiled at -O2, no
// -march, no fast-math, the flags a user's training code has.

#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include "bench_env.hpp"

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

std::size_t bench_n() {
    static const std::size_t n = bench_env::size_or("CHILDTUNE_BENCH_N", std::size_t{64} << 20);
    return n;
}

constexpr double bytes_per_param = 28.0;
constexpr double keep_probability = 0.3;

// First-touch every buffer in parallel, with the same static split the work uses,
// so pages are spread as in a real training process.
std::vector<float> filled(std::size_t n, float value) {
    std::vector<float> v(n);
    childtune::default_backend{}.parallel_for((n + 65535) / 65536, [&](std::size_t b) {
        const std::size_t end = std::min(n, (b + 1) * 65536);
        for (std::size_t i = b * 65536; i < end; ++i) v[i] = value * static_cast<float>(1 + (i % 7));
    });
    return v;
}

void report(benchmark::State& state, double bytes_per_item) {
    const auto n = static_cast<double>(bench_n());
    state.counters["params/s"] =
        benchmark::Counter(n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::OneK::kIs1000);
    state.counters["bytes/s"] = benchmark::Counter(n * bytes_per_item, benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::OneK::kIs1000);
}

// STREAM triad a = b + s*c: the memory-bandwidth roofline of this machine.
void triad(benchmark::State& state) {
    const std::size_t n = bench_n();
    auto a = filled(n, 0.0f), b = filled(n, 1.0f), c = filled(n, 2.0f);
    const std::size_t chunk = 1 << 16, items = (n + chunk - 1) / chunk;
    for (auto _ : state) {
        childtune::default_backend{}.parallel_for(items, [&](std::size_t w) {
            const std::size_t end = std::min(n, (w + 1) * chunk);
            for (std::size_t i = w * chunk; i < end; ++i) a[i] = b[i] + 1.5f * c[i];
        });
        benchmark::ClobberMemory();
    }
    report(state, 12.0);
}

// What a user writes by hand: the reference AdamW as a plain loop. std::sqrt
// must set errno, so at -O2 the compiler keeps this loop scalar.
void plain_loop_adamw(benchmark::State& state) {
    const std::size_t n = bench_n();
    auto p = filled(n, 1.0f), g = filled(n, 0.01f), m = filled(n, 0.0f), v = filled(n, 0.0f);
    const std::size_t chunk = 1 << 16, items = (n + chunk - 1) / chunk;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, step = 1e-3f, decay = 1.0f - 1e-5f;
    for (auto _ : state) {
        childtune::default_backend{}.parallel_for(items, [&](std::size_t w) {
            const std::size_t end = std::min(n, (w + 1) * chunk);
            for (std::size_t i = w * chunk; i < end; ++i) {
                p[i] *= decay;
                m[i] = b1 * m[i] + (1 - b1) * g[i];
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                p[i] -= step * m[i] / (std::sqrt(v[i]) + eps);
            }
        });
        benchmark::ClobberMemory();
    }
    report(state, bytes_per_param);
}

enum class mode { dense, bernoulli, fisher };

// One fp32 tensor of N parameters in a masked group through childtune's
// optimizer (job set-up included), with or without the NaN/Inf pre-scan.
void fused_step(benchmark::State& state, mode which, childtune::nonfinite_policy check) {
    const std::size_t n = bench_n();
    auto p = filled(n, 1.0f), g = filled(n, 0.01f);
    childtune::mask_mode mask = childtune::dense{};
    if (which == mode::bernoulli) mask = childtune::bernoulli{keep_probability, 42};
    if (which == mode::fisher) {
        childtune::bit_mask bits(n);
        const auto draws = childtune::bernoulli{keep_probability, 7}.view(1, 0);
        for (std::size_t w = 0; w < bits.words().size(); ++w) bits.words()[w] = draws.bits64(64 * w);
        childtune::mask_set set;
        set.add("encoder.weight", childtune::bit_mask(n, std::vector<std::uint64_t>(bits.words().begin(), bits.words().end())));
        mask = childtune::fixed{std::move(set)};
    }
    childtune::optimizer<childtune::adamw> opt(std::move(mask), {.on_nonfinite = check});
    const auto group = opt.add_group("encoder", {.lr = 1e-5, .weight_decay = 0.01});
    opt.add_parameter(group, "encoder.weight", p, g);
    opt.step(); // allocate the state outside the timed loop
    for (auto _ : state) {
        opt.step();
        benchmark::ClobberMemory();
    }
    report(state, bytes_per_param);
}

} // namespace

BENCHMARK(triad)->Name("triad")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_step, dense, mode::dense, childtune::nonfinite_policy::unchecked)
    ->Name("step/dense")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_step, ct_f, mode::bernoulli, childtune::nonfinite_policy::unchecked)
    ->Name("step/ct_f")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_step, ct_d, mode::fisher, childtune::nonfinite_policy::unchecked)
    ->Name("step/ct_d")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_step, dense_checked, mode::dense, childtune::nonfinite_policy::raise)
    ->Name("step/dense+nan_check")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fused_step, ct_f_checked, mode::bernoulli, childtune::nonfinite_policy::raise)
    ->Name("step/ct_f+nan_check")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(plain_loop_adamw)->Name("plain_loop/adamw")->UseRealTime()->Unit(benchmark::kMillisecond);
