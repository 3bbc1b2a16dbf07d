// Child-Tuning_D mask selection: the global top-p cut over N float Fisher scores,
// beside what a user would otherwise write (nth_element or sort on a copy) and
// what the published code does (concatenate every score, percentile on a copy).
// Also the magnitude mask (SIFT, mask/magnitude.hpp): one step's selection of
// the top p of |g| over the same N values taken as gradients, per tensor and
// global, as the optimizer runs it (observe() on a gradient_reader).
//
// Besides time, every benchmark reports the peak memory it adds: `extra_heap`,
// the peak of live operator-new bytes above those live at its start (this binary
// counts them), and `extra_rss`, the peak resident set (VmHWM) above the RSS at
// its start. Our selection's figure includes the masks it returns (N/8 bytes).
//
// N defaults to 256 Mi scores (about a BERT-large encoder, twice over); set
// CHILDTUNE_BENCH_SELECT_N to change it (CI smoke-tests with a small N).

#include <childtune/exec/backend.hpp>
#include <childtune/mask/magnitude.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/select/top_p.hpp>

#include "bench_env.hpp"
#include "process_memory.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <malloc.h>

// ---- a counting global allocator -------------------------------------------------------------

namespace {

std::atomic<std::size_t> live_bytes{0}, peak_bytes{0};

void note_allocation(void* p) {
    if (!p) throw std::bad_alloc();
    const std::size_t now = live_bytes.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) + malloc_usable_size(p);
    std::size_t peak = peak_bytes.load(std::memory_order_relaxed);
    while (now > peak && !peak_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
}
void note_release(void* p) {
    if (p) live_bytes.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
}

} // namespace

// The allocating and freeing functions out of line: inlined into a caller,
// malloc() and free() meet the calls of the builtin operator new and delete that
// GCC 12 also sees there, and -Wmismatched-new-delete reports a false positive
// (whether it does depends on what else that caller inlines).
__attribute__((noinline)) void* operator new(std::size_t n) {
    void* p = std::malloc(n == 0 ? 1 : n);
    note_allocation(p);
    return p;
}
__attribute__((noinline)) void* operator new(std::size_t n, std::align_val_t a) {
    const auto align = static_cast<std::size_t>(a);
    void* p = std::aligned_alloc(align, (n + align - 1) / align * align);
    note_allocation(p);
    return p;
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
__attribute__((noinline)) void operator delete(void* p) noexcept {
    note_release(p);
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
void operator delete(void* p, std::align_val_t) noexcept { operator delete(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { operator delete(p); }
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { operator delete(p); }
void operator delete[](void* p, std::align_val_t) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { operator delete(p); }

namespace {

std::size_t bench_n() {
    static const std::size_t n = bench_env::size_or("CHILDTUNE_BENCH_SELECT_N", std::size_t{256} << 20);
    return n;
}

// ---- peak-memory probes ---------------------------------------------------------------------------

// What one benchmark adds to the heap and to the resident set at its peak.
class memory_probe {
public:
    memory_probe() {
        rss_ = bench::begin_memory();
        heap_ = live_bytes.load();
        peak_bytes.store(heap_);
    }
    void report(benchmark::State& state) const {
        using C = benchmark::Counter;
        const std::size_t hwm = bench::peak_rss_bytes(), heap = peak_bytes.load();
        state.counters["extra_heap"] = C(static_cast<double>(heap > heap_ ? heap - heap_ : 0), C::kDefaults, C::OneK::kIs1024);
        state.counters["extra_rss"] = C(static_cast<double>(hwm > rss_ ? hwm - rss_ : 0), C::kDefaults, C::OneK::kIs1024);
        state.counters["N"] = static_cast<double>(bench_n());
    }

private:
    std::size_t rss_ = 0, heap_ = 0;
};

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
    const memory_probe memory;
    for (auto _ : state) {
        auto r = childtune::select_top_p(in.tensors, keep_fraction, rule, backend);
        benchmark::DoNotOptimize(r.kept);
    }
    memory.report(state);
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
    const memory_probe memory;
    for (auto _ : state) {
        auto r = childtune::select_kth(in.segments, k);
        benchmark::DoNotOptimize(r.value);
    }
    memory.report(state);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

// A magnitude mask's selection at one step: the top p of |g| of the 24 layers
// (one cut per tensor, or one over all), masks written, as observe() does it.
void magnitude_select(benchmark::State& state, childtune::selection_scope scope, childtune::selection_rule rule) {
    const auto& in = layered_scores();
    std::vector<childtune::tensor_info> infos;
    for (std::size_t i = 0; i < layers; ++i) {
        childtune::tensor_info t;
        t.name = in.names[i];
        t.group_name = "encoder";
        t.size = t.elements = in.segments[i].size();
        infos.push_back(t);
    }
    const childtune::gradient_reader reader(infos, in.segments);
    const childtune::magnitude policy{.p = keep_fraction, .scope = scope, .rule = rule};
    const memory_probe memory;
    for (auto _ : state) {
        auto next = policy.observe(reader, 0);
        benchmark::DoNotOptimize(next.masks().tensor_count());
    }
    memory.report(state);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}
void BM_magnitude_per_tensor(benchmark::State& state) {
    magnitude_select(state, childtune::selection_scope::per_tensor, childtune::selection_rule::exact_count);
}
void BM_magnitude_global(benchmark::State& state) {
    magnitude_select(state, childtune::selection_scope::global, childtune::selection_rule::percentile);
}

// What numpy.percentile does: partition a concatenated copy (the copy is not timed).
void BM_nth_element_on_copy(benchmark::State& state) {
    const auto& x = scores();
    const std::size_t k = static_cast<std::size_t>(static_cast<double>(bench_n() - 1) * (1 - keep_fraction));
    const memory_probe memory;
    std::vector<float> copy;
    for (auto _ : state) {
        state.PauseTiming();
        copy = x;
        state.ResumeTiming();
        std::nth_element(copy.begin(), copy.begin() + static_cast<std::ptrdiff_t>(k), copy.end());
        benchmark::DoNotOptimize(copy[k]);
    }
    memory.report(state);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

void BM_sort_on_copy(benchmark::State& state) {
    const auto& x = scores();
    const memory_probe memory;
    std::vector<float> copy;
    for (auto _ : state) {
        state.PauseTiming();
        copy = x;
        state.ResumeTiming();
        std::sort(copy.begin(), copy.end());
        benchmark::DoNotOptimize(copy.data());
    }
    memory.report(state);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(bench_n()));
}

// What the published Child-Tuning code does, in C++: concatenate every tensor's
// scores into one array (torch.cat), take numpy.percentile on it (which
// partitions a copy), then build one byte mask per tensor (`score >= polar`, a
// bool tensor). All of it timed: the copies are part of that path.
void BM_reference_cat_percentile(benchmark::State& state) {
    const auto& in = layered_scores();
    const std::size_t n = bench_n();
    const double rank = static_cast<double>(n - 1) * (1 - keep_fraction);
    const auto k = static_cast<std::size_t>(rank);
    const memory_probe memory;
    for (auto _ : state) {
        std::vector<float> all;
        all.reserve(n);
        for (const auto& seg : in.segments) all.insert(all.end(), seg.begin(), seg.end());
        std::vector<float> part(all);
        std::nth_element(part.begin(), part.begin() + static_cast<std::ptrdiff_t>(k), part.end());
        const float lo = part[k];
        const float hi = k + 1 < n ? *std::min_element(part.begin() + static_cast<std::ptrdiff_t>(k) + 1, part.end()) : lo;
        const double polar = static_cast<double>(lo) + (static_cast<double>(hi) - static_cast<double>(lo)) * (rank - static_cast<double>(k));
        std::vector<std::vector<unsigned char>> masks;
        for (const auto& seg : in.segments) {
            std::vector<unsigned char> m(seg.size());
            for (std::size_t i = 0; i < seg.size(); ++i) m[i] = static_cast<double>(seg[i]) >= polar;
            masks.push_back(std::move(m));
        }
        benchmark::DoNotOptimize(masks.data());
    }
    memory.report(state);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

} // namespace

BENCHMARK(BM_top_p_percentile)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_top_p_percentile_serial)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_top_p_exact_count)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_magnitude_per_tensor)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_magnitude_global)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_select_kth)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_reference_cat_percentile)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_nth_element_on_copy)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_sort_on_copy)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
