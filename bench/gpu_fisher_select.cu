// Child-Tuning_D on an NVIDIA GPU: the Fisher accumulation and the exact global
// top-p selection of the Thrust adapter at N scores (default 1e9), against the
// two things a GPU user would otherwise do or compare with, in the same process:
//
//   read/reduce                 one read pass over the N scores (thrust::reduce):
//                               the floor of any selection
//   select/{percentile,exact_count}
//                               childtune::thrust::select_top_p at p = 0.3: the
//                               radix select's 3 histogram passes + the mask pass
//   sort/thrust                 a copy of the scores sorted by thrust::sort (CUB
//                               radix sort), the cut then read off: what a selection
//                               by sorting costs, without even writing the masks
//   fisher/accumulate           one batch of one N-element gradient into the scores
//                               (the norm pass, then the update pass)
//
// Counters: x_read (the read pass's time over this method's: the inverse of how
// many read passes the method costs), held_GB (device memory the method still
// holds when it returns, from cudaMemGetInfo: the masks for a selection, the
// sorted copy and the sort's scratch for sorting). Selections synchronise with
// the host between passes, so each iteration is timed on the host around a
// stream-synchronised call (manual time).
//
// Environment: CHILDTUNE_BENCH_GPU_SELECT_N (default 1e9).

#include <childtune/thrust.hpp>

#include "bench_env.hpp"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <thrust/copy.h>
#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/reduce.h>
#include <thrust/sort.h>
#include <thrust/tabulate.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check_cuda(cudaError_t status, const char* call) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(status));
}
#define GPU_CHECK(call) check_cuda((call), #call)

bool g_failed = false;
cudaStream_t g_stream = nullptr;
auto on_stream() { return ::thrust::cuda::par.on(g_stream); }

std::size_t score_count() { return bench_env::size_or("CHILDTUNE_BENCH_GPU_SELECT_N", 1000000000); }

//! A Fisher-like score: the square of a hashed, roughly bell-shaped gradient,
//! so scores share few exponents and many fall into the same histogram buckets.
struct fisher_like {
    __host__ __device__ float operator()(std::uint64_t i) const {
        std::uint64_t x = i * 0x9E3779B97F4A7C15ull;
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        const float u1 = static_cast<float>(x & 0xFFFFFF) / 16777216.0f;
        const float u2 = static_cast<float>((x >> 24) & 0xFFFFFF) / 16777216.0f;
        const float g = (u1 + u2 - 1.0f) * 1e-3f; // triangular, zero-centred
        return g * g;
    }
};

//! The scores every case reads, made once on the device.
float* scores() {
    static float* data = [] {
        float* p = nullptr;
        GPU_CHECK(cudaMalloc(&p, score_count() * sizeof(float)));
        ::thrust::tabulate(on_stream(), p, p + score_count(), fisher_like{});
        GPU_CHECK(cudaStreamSynchronize(g_stream));
        return p;
    }();
    return data;
}

std::size_t free_bytes() {
    std::size_t free = 0, total = 0;
    GPU_CHECK(cudaMemGetInfo(&free, &total));
    return free;
}

//! Host seconds of `op`, stream-synchronised.
template <class Op>
double seconds(Op&& op) {
    const auto start = std::chrono::steady_clock::now();
    op();
    GPU_CHECK(cudaStreamSynchronize(g_stream));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double read_pass_seconds() {
    static const double s = [] {
        const float* x = scores();
        double best = 1e30;
        for (int r = 0; r < 5; ++r)
            best = std::min(best, seconds([&] {
                                benchmark::DoNotOptimize(::thrust::reduce(on_stream(), x, x + score_count(), 0.0f,
                                                                          ::thrust::maximum<float>()));
                            }));
        return best;
    }();
    return s;
}

void report(benchmark::State& state, double total_seconds, double extra_bytes) {
    const double per_iteration = total_seconds / static_cast<double>(state.iterations());
    state.counters["x_read"] = read_pass_seconds() / per_iteration;
    state.counters["held_GB"] = extra_bytes / 1e9;
    state.counters["N"] = static_cast<double>(score_count());
}

void read_reduce(benchmark::State& state) {
    const float* x = scores();
    double total = 0;
    for (auto _ : state) {
        const double s = seconds([&] {
            benchmark::DoNotOptimize(::thrust::reduce(on_stream(), x, x + score_count(), 0.0f, ::thrust::maximum<float>()));
        });
        state.SetIterationTime(s);
        total += s;
    }
    report(state, total, 0);
}

template <childtune::selection_rule Rule>
void select(benchmark::State& state) {
    const std::vector<childtune::thrust::device_scores<float>> in = {{"all", scores(), score_count()}};
    const std::size_t before = free_bytes();
    std::size_t least_free = before;
    double total = 0;
    std::uint64_t kept = 0;
    for (auto _ : state) {
        const double s = seconds([&] {
            auto result = childtune::thrust::select_top_p(on_stream(), in, 0.3, Rule);
            least_free = std::min(least_free, free_bytes()); // the masks are still held here
            kept = result.kept;
        });
        state.SetIterationTime(s);
        total += s;
    }
    report(state, total, static_cast<double>(before - least_free));
    state.counters["kept_frac"] = static_cast<double>(kept) / static_cast<double>(score_count());
}

void sort_thrust(benchmark::State& state) {
    const float* x = scores();
    const std::size_t n = score_count();
    float* copy = nullptr;
    const std::size_t before = free_bytes();
    GPU_CHECK(cudaMalloc(&copy, n * sizeof(float)));
    std::size_t least_free = before;
    double total = 0;
    for (auto _ : state) {
        const double s = seconds([&] {
            GPU_CHECK(cudaMemcpyAsync(copy, x, n * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
            ::thrust::sort(on_stream(), copy, copy + n);
            least_free = std::min(least_free, free_bytes());
            float cut = 0;
            GPU_CHECK(cudaMemcpyAsync(&cut, copy + static_cast<std::size_t>(0.7 * static_cast<double>(n - 1)),
                                      sizeof(float), cudaMemcpyDeviceToHost, g_stream));
            GPU_CHECK(cudaStreamSynchronize(g_stream));
            benchmark::DoNotOptimize(cut);
        });
        state.SetIterationTime(s);
        total += s;
    }
    GPU_CHECK(cudaFree(copy));
    report(state, total, static_cast<double>(before - least_free));
}

void fisher_accumulate(benchmark::State& state) {
    const std::size_t n = score_count();
    childtune::thrust::fisher_accumulator<float> fisher({.max_grad_norm = 1.0});
    fisher.add_tensor("all", n);
    const float* grad = scores(); // any finite values do: the cost does not depend on them
    double total = 0;
    for (auto _ : state) {
        const double s = seconds([&] { fisher.accumulate(on_stream(), "all", grad, n); });
        fisher.end_batch();
        state.SetIterationTime(s);
        total += s;
    }
    report(state, total, 0);
}

void guarded(benchmark::State& state, const char* name, void (*fn)(benchmark::State&)) {
    try {
        fn(state);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_fisher_select: %s failed: %s\n", name, e.what());
        g_failed = true;
        state.SkipWithError(e.what());
    }
}

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::fprintf(stderr, "gpu_fisher_select: no CUDA device; this benchmark needs an NVIDIA GPU\n");
        return 1;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaStreamCreate(&g_stream) != cudaSuccess) {
        std::fprintf(stderr, "gpu_fisher_select: CUDA setup failed\n");
        return 1;
    }
    benchmark::AddCustomContext("gpu", prop.name);
    benchmark::AddCustomContext("select_N", std::to_string(score_count()));

    using childtune::selection_rule;
    const std::vector<std::pair<const char*, void (*)(benchmark::State&)>> cases = {
        {"read/reduce", &read_reduce},
        {"select/percentile", &select<selection_rule::percentile>},
        {"select/exact_count", &select<selection_rule::exact_count>},
        {"sort/thrust", &sort_thrust},
        {"fisher/accumulate", &fisher_accumulate},
    };
    for (const auto& [name, fn] : cases)
        benchmark::RegisterBenchmark(name, [name = name, fn = fn](benchmark::State& s) { guarded(s, name, fn); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return g_failed ? 1 : 0;
}
