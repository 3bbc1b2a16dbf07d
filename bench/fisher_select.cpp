// Child-Tuning_D mask selection: the global top-p cut over N float Fisher scores,
// beside what a user would otherwise write (nth_element or sort on a copy).
//
// N defaults to 256 Mi scores (about a BERT-large encoder, twice over); set
// CHILDTUNE_BENCH_SELECT_N to change it (CI smoke-tests with a small N).

#include <childtune/exec/backend.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/select/top_p.hpp>

#include "bench_env.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace {

std::size_t bench_n() {
    static const std::size_t n = bench_env::size_or("CHILDTUNE_BENCH_SELECT_N", std::size_t{256} << 20);
    return n;
}

constexpr std::size_t layers = 24;
constexpr double keep_fraction = 0.3;

std::uint64_t mix(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

// Fisher-like scores: squares of small gradients spread over many exponents,
// with 1/16 exact zeros (parameters no batch ever touched).
const std::vector<float>& scores() {
    static const std::vector<float> data = [] {
        std::vector<float> x(bench_n());
        const std::size_t blocks = (x.size() + 65535) / 65536;
        childtune::default_backend{}.parallel_for(blocks, [&](std::size_t b) {
            const std::size_t end = std::min(x.size(), (b + 1) * 65536);
            for (std::size_t i = b * 65536; i < end; ++i) {
                const std::uint64_t r = mix(i);
                const float g = static_cast<float>(r >> 40) * 0x1p-24f * static_cast<float>(1u << (r & 15)) * 1e-4f;
                x[i] = (r >> 36 & 15) == 0 ? 0.0f : g * g;
            }
        });
        return x;
    }();
    return data;
}

struct layered {
    std::vector<std::string> names;
    std::vector<childtune::named_scores<float>> tensors;
    std::vector<std::span<const float>> segments;
};

const layered& layered_scores() {
    static const layered l = [] {
        const auto& x = scores();
        layered out;
        for (std::size_t i = 0; i < layers; ++i) out.names.push_back("encoder.layer." + std::to_string(i));
        for (std::size_t i = 0; i < layers; ++i) {
            const std::size_t first = x.size() * i / layers, last = x.size() * (i + 1) / layers;
            out.tensors.push_back({out.names[i], std::span<const float>(x.data() + first, last - first)});
            out.segments.push_back(out.tensors.back().scores);
        }
        return out;
    }();
    return l;
}

template <class Backend>
void top_p(benchmark::State& state, childtune::selection_rule rule, Backend backend) {
    const auto& in = layered_scores();
    for (auto _ : state) {
        auto r = childtune::select_top_p(in.tensors, keep_fraction, rule, backend);
        benchmark::DoNotOptimize(r.kept);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
    state.counters["threads"] = static_cast<double>(backend.concurrency());
}

void BM_top_p_percentile(benchmark::State& state) {
    top_p(state, childtune::selection_rule::percentile, childtune::default_backend{});
}
void BM_top_p_percentile_serial(benchmark::State& state) {
    top_p(state, childtune::selection_rule::percentile, childtune::serial_backend{});
}
void BM_top_p_exact_count(benchmark::State& state) {
    top_p(state, childtune::selection_rule::exact_count, childtune::default_backend{});
}

// The order statistic alone (what the two baselines below compute).
void BM_select_kth(benchmark::State& state) {
    const auto& in = layered_scores();
    const std::size_t k = static_cast<std::size_t>(static_cast<double>(bench_n() - 1) * (1 - keep_fraction));
    for (auto _ : state) {
        auto r = childtune::select_kth(in.segments, k);
        benchmark::DoNotOptimize(r.value);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

// What numpy.percentile does: partition a concatenated copy (the copy is not timed).
void BM_nth_element_on_copy(benchmark::State& state) {
    const auto& x = scores();
    const std::size_t k = static_cast<std::size_t>(static_cast<double>(bench_n() - 1) * (1 - keep_fraction));
    std::vector<float> copy;
    for (auto _ : state) {
        state.PauseTiming();
        copy = x;
        state.ResumeTiming();
        std::nth_element(copy.begin(), copy.begin() + static_cast<std::ptrdiff_t>(k), copy.end());
        benchmark::DoNotOptimize(copy[k]);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

void BM_sort_on_copy(benchmark::State& state) {
    const auto& x = scores();
    std::vector<float> copy;
    for (auto _ : state) {
        state.PauseTiming();
        copy = x;
        state.ResumeTiming();
        std::sort(copy.begin(), copy.end());
        benchmark::DoNotOptimize(copy.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

} // namespace

BENCHMARK(BM_top_p_percentile)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_top_p_percentile_serial)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_top_p_exact_count)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_select_kth)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_nth_element_on_copy)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_sort_on_copy)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
