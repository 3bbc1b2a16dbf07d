// The Thrust adapter's fused AdamW step on an NVIDIA GPU, against the GPU's own
// roofline measured in the same process.
//
// What runs (one binary, so every ratio comes from one run on one card):
//   copy/device_to_device      cudaMemcpyAsync of N floats: the bandwidth roofline
//   adamw/{fp32,bf16}/{dense,ct_f,ct_d}
//                              childtune::thrust::step<adamw> (torch flavour, lr 1e-3,
//                              wd 0.01) over one tensor of N elements
//   model/adamw/fp32/{dense,ct_f,ct_d}
//                              the same over BERT-large's 393 tensors (~335 M
//                              parameters) in one batch: the cost of multi-tensor
//                              batching next to the one-tensor case
//   model/adamw/fp32/dense+memory_check
//                              model/adamw/fp32/dense with the adapter's default
//                              pointer check (one cudaPointerGetAttributes per
//                              pointer per call); the other cases check once, in
//                              the warm-up step, and time the hot-loop call
//                              (memory_check::off).
//
// Bytes counted per element (each input read once, each output written once):
//   copy        8     read 4 + write 4
//   fp32 AdamW  28    read param, grad, m, v (16) + write param, m, v (12)
//   bf16 AdamW  22    bf16 param and grad, fp32 state: read 2+2+4+4, write 2+4+4
//   ct_d        +1/8  the fixed mask's packed bits, read once
// Child-Tuning_F draws its keep bits (Philox) in registers: no extra bytes.
//
// Counters: GB/s (counted bytes / mean step time, 1e9 bytes/s), x_copy (GB/s over
// the copy probe's GB/s: the fraction of the roofline a step reaches), copy_GB/s
// (the probe: median of 5 device-to-device copies of N floats), bytes/elem, N,
// tensors, m_nonzero_frac (the share of elements whose first moment is nonzero
// after the run: ~1 dense, ~0.3 ct_d, 1 - 0.7^steps ct_f; a sanity check that the
// step ran). After each run the parameters are checked for NaN/Inf on the device.
//
// Each step is timed with CUDA events on a non-default stream, one step per
// iteration, after one untimed warm-up step. thrust::step is synchronous on the
// host (it allocates, fills and frees a small descriptor table per call), so the
// event interval is the step's wall time, launch and table copy included.
// Only the host bookkeeping of the batch (step counts, mask views) is untimed.
//
// Environment:
//   CHILDTUNE_BENCH_GPU_N             elements of the one-tensor cases and the copy (default 1e9)
//   CHILDTUNE_BENCH_GPU_MODEL_LAYERS  encoder layers of the model-shaped batch (default 24)
//   CHILDTUNE_BENCH_GPU_MODEL_HIDDEN  its hidden size (default 1024)
//
// Build (from the repository root):
//   nvcc -std=c++20 -O3 -arch=sm_90 -I include -I adapters/thrust/include bench/gpu_step.cu -o gpu_step -lbenchmark -lpthread
// Smoke run: CHILDTUNE_BENCH_GPU_N=1048576 ./gpu_step --benchmark_min_time=0.01
// The program exits non-zero when there is no CUDA device, and when any case
// failed (a CUDA error, or NaN/Inf parameters); the other cases still run.

#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/thrust/step.hpp>
#include <childtune/update/adamw.hpp>

#include "bench_env.hpp"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <thrust/count.h>
#include <thrust/execution_policy.h>
#include <thrust/tabulate.h>
#include <thrust/version.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

// ---- CUDA errors -----------------------------------------------------------------------

//! A failed CUDA call throws: inside a benchmark the guard below reports it with
//! SkipWithError and the process exits non-zero at the end, so the JSON of the
//! cases that did run is still written.
void check_cuda(cudaError_t status, const char* call, int line) {
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("gpu_step.cu:") + std::to_string(line) + ": " + call + ": " +
                                 cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}
#define GPU_CHECK(call) check_cuda((call), #call, __LINE__)

bool g_failed = false; //!< any case failed: main returns 1

// ---- the stream, events and device memory every case uses --------------------------------

struct gpu_context {
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
};
gpu_context g_gpu;

//! The Thrust policy of every case: synchronous `par` on the benchmark stream.
auto on_stream() { return ::thrust::cuda::par.on(g_gpu.stream); }

//! Device seconds of `op` between two events recorded on the benchmark stream.
template <class Op>
double event_seconds(Op&& op) {
    GPU_CHECK(cudaEventRecord(g_gpu.start, g_gpu.stream));
    op();
    GPU_CHECK(cudaEventRecord(g_gpu.stop, g_gpu.stream));
    GPU_CHECK(cudaEventSynchronize(g_gpu.stop));
    float ms = 0.0f;
    GPU_CHECK(cudaEventElapsedTime(&ms, g_gpu.start, g_gpu.stop));
    return static_cast<double>(ms) * 1e-3;
}

//! Sub-buffers start at multiples of 512 bytes (what PyTorch's caching allocator
//! gives), so every tensor is aligned for the widest loads.
constexpr std::size_t padded(std::size_t bytes) { return (bytes + 511) / 512 * 512; }
template <class T>
constexpr std::size_t bytes_for(std::size_t count) { return padded(count * sizeof(T)); }

//! Device memory one case may hold: fp32 at N = 1e9 needs ~16 GB; a case that
//! would need more than 40 GB (a too-large N) is refused with a message instead.
constexpr std::size_t max_device_bytes = std::size_t{40} * 1000 * 1000 * 1000;

//! One cudaMalloc'd block, grown when a case needs more and reused otherwise.
//! Google Benchmark calls a case's function several times while it picks the
//! iteration count; reusing the block keeps a 16 GB cudaMalloc/cudaFree out of
//! each call. Cases re-initialise what they carve from it.
class device_arena {
public:
    std::byte* acquire(std::size_t bytes) {
        if (bytes > max_device_bytes)
            throw std::runtime_error("a case needs " + std::to_string(bytes) + " bytes of device memory, over the " +
                                     std::to_string(max_device_bytes) + "-byte budget: lower CHILDTUNE_BENCH_GPU_N");
        if (bytes > capacity_) {
            release();
            void* p = nullptr;
            GPU_CHECK(cudaMalloc(&p, bytes));
            base_ = static_cast<std::byte*>(p);
            capacity_ = bytes;
        }
        return base_;
    }
    void release() {
        if (!base_) return;
        std::byte* b = base_;
        base_ = nullptr;
        capacity_ = 0;
        GPU_CHECK(cudaFree(b));
    }

private:
    std::byte* base_ = nullptr;
    std::size_t capacity_ = 0;
};
device_arena g_arena;

//! Hands out consecutive sub-buffers of an acquired block.
class carver {
public:
    carver(std::byte* base, std::size_t bytes) : next_(base), end_(base + bytes) {}
    template <class T>
    T* take(std::size_t count) {
        const std::size_t bytes = bytes_for<T>(count);
        if (bytes > static_cast<std::size_t>(end_ - next_)) throw std::logic_error("gpu_step: carved past the arena");
        T* p = reinterpret_cast<T*>(next_);
        next_ += bytes;
        return p;
    }

private:
    std::byte* next_;
    std::byte* end_;
};

// ---- problem shapes ---------------------------------------------------------------------

struct tensor_spec {
    std::string name;
    std::size_t offset = 0; //!< elements from the start of the buffers
    std::size_t size = 0;
};

//! Tensors laid out back to back in one set of buffers (param, grad, m, v).
struct layout {
    std::vector<tensor_spec> tensors;
    std::size_t total = 0;   //!< parameters (what the byte counts count)
    std::size_t storage = 0; //!< total plus the padding between tensors

    void add(std::string name, std::size_t size) {
        tensors.push_back({std::move(name), storage, size});
        total += size;
        //! 128 elements keep every tensor 512-byte aligned in fp32 (256 B in bf16)
        //! and its fixed-mask bits word-aligned.
        storage += (size + 127) / 128 * 128;
    }
};

std::size_t flat_n() {
    static const std::size_t n = bench_env::size_or("CHILDTUNE_BENCH_GPU_N", 1000000000);
    return n;
}

const layout& flat_layout() {
    static const layout l = [] {
        layout r;
        r.add("encoder.layer.0.weight", flat_n());
        return r;
    }();
    return l;
}

//! BERT-large's parameter set (hidden 1024, 24 layers: ~335 M parameters in 393
//! tensors) with a two-class head, as bench/step_support.hpp's model shape.
const layout& model_layout() {
    static const layout l = [] {
        const std::size_t h = bench_env::size_or("CHILDTUNE_BENCH_GPU_MODEL_HIDDEN", 1024), ffn = 4 * h;
        const std::size_t layers = bench_env::size_or("CHILDTUNE_BENCH_GPU_MODEL_LAYERS", 24);
        layout r;
        r.add("embeddings.word_embeddings.weight", 30522 * h);
        r.add("embeddings.position_embeddings.weight", 512 * h);
        r.add("embeddings.token_type_embeddings.weight", 2 * h);
        r.add("embeddings.LayerNorm.weight", h);
        r.add("embeddings.LayerNorm.bias", h);
        for (std::size_t i = 0; i < layers; ++i) {
            const std::string p = "encoder.layer." + std::to_string(i) + ".";
            for (const char* w : {"attention.self.query.", "attention.self.key.", "attention.self.value.",
                                  "attention.output.dense."}) {
                r.add(p + w + "weight", h * h);
                r.add(p + w + "bias", h);
            }
            r.add(p + "attention.output.LayerNorm.weight", h);
            r.add(p + "attention.output.LayerNorm.bias", h);
            r.add(p + "intermediate.dense.weight", ffn * h);
            r.add(p + "intermediate.dense.bias", ffn);
            r.add(p + "output.dense.weight", h * ffn);
            r.add(p + "output.dense.bias", h);
            r.add(p + "output.LayerNorm.weight", h);
            r.add(p + "output.LayerNorm.bias", h);
        }
        r.add("pooler.dense.weight", h * h);
        r.add("pooler.dense.bias", h);
        r.add("classifier.weight", 2 * h);
        r.add("classifier.bias", 2);
        return r;
    }();
    return l;
}

// ---- device-side initialisation and checks -------------------------------------------------

//! Parameters near 1, gradients small and nonzero (the CPU benchmark's values).
template <class P>
struct param_value {
    __host__ __device__ P operator()(std::ptrdiff_t i) const {
        return P(1.0f - 1e-3f * static_cast<float>(static_cast<std::uint64_t>(i) % 13));
    }
};
template <class P>
struct grad_value {
    __host__ __device__ P operator()(std::ptrdiff_t i) const {
        return P(1e-2f * (static_cast<float>(static_cast<std::uint64_t>(i) % 7) - 3.0f) + 1e-3f);
    }
};

//! Word w of a fixed mask: a Bernoulli(p) draw fixed once (a Fisher-like mask, as
//! the CPU benchmark builds), bit j for element 64 w + j, zero past the end.
struct fixed_mask_word {
    childtune::bernoulli_view draw;
    std::uint64_t size;
    __host__ __device__ std::uint64_t operator()(std::ptrdiff_t w) const {
        const std::uint64_t first = 64 * static_cast<std::uint64_t>(w);
        std::uint64_t bits = 0;
        for (std::uint64_t j = 0; j < 64 && first + j < size; ++j)
            if (draw.keep(first + j)) bits |= std::uint64_t{1} << j;
        return bits;
    }
};

template <class P>
struct is_nonfinite {
    __host__ __device__ bool operator()(P x) const {
        return (childtune::detail::float_bits(static_cast<float>(x)) & 0x7F800000u) == 0x7F800000u;
    }
};
struct is_nonzero {
    __host__ __device__ bool operator()(float x) const { return x != 0.0f; }
};

// ---- the copy roofline -----------------------------------------------------------------

//! Device-to-device copy of N floats: GB/s counting read + write (8 N bytes),
//! the median of 5 timed copies after one warm-up. Measured once, on first use;
//! every case calls it before it carves the arena, since the probe uses it too.
double copy_probe_gbps() {
    static const double gbps = [] {
        const std::size_t n = flat_n(), bytes = n * sizeof(float);
        carver c(g_arena.acquire(2 * bytes_for<float>(n)), 2 * bytes_for<float>(n));
        float* src = c.take<float>(n);
        float* dst = c.take<float>(n);
        GPU_CHECK(cudaMemsetAsync(src, 0x3c, bytes, g_gpu.stream));
        const auto copy = [&] { GPU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_gpu.stream)); };
        (void)event_seconds(copy);
        std::vector<double> t;
        for (int i = 0; i < 5; ++i) t.push_back(event_seconds(copy));
        std::sort(t.begin(), t.end());
        return 8.0 * static_cast<double>(n) / t[2] / 1e9;
    }();
    return gbps;
}

// ---- counters --------------------------------------------------------------------------

void report(benchmark::State& state, double bytes_per_elem, const layout& l, double seconds, double m_nonzero_frac) {
    using C = benchmark::Counter;
    const double n = static_cast<double>(l.total);
    const double gbps = seconds > 0.0 ? bytes_per_elem * n * static_cast<double>(state.iterations()) / seconds / 1e9 : 0.0;
    const double copy = copy_probe_gbps();
    //! Plain counters (not kIsRate): the rate is over the event-timed device time,
    //! which only this function knows.
    state.counters["GB/s"] = C(gbps);
    state.counters["x_copy"] = C(gbps / copy);
    state.counters["copy_GB/s"] = C(copy);
    state.counters["bytes/elem"] = C(bytes_per_elem);
    state.counters["N"] = C(n);
    state.counters["tensors"] = C(static_cast<double>(l.tensors.size()));
    if (m_nonzero_frac >= 0.0) state.counters["m_nonzero_frac"] = C(m_nonzero_frac);
    state.SetLabel(std::to_string(l.tensors.size()) + (l.tensors.size() == 1 ? " tensor, " : " tensors, ") +
                   std::to_string(l.total) + " params");
}

// ---- the cases ---------------------------------------------------------------------------

void copy_device_to_device(benchmark::State& state) {
    (void)copy_probe_gbps();
    const layout& l = flat_layout();
    const std::size_t n = l.total, bytes = n * sizeof(float);
    carver c(g_arena.acquire(2 * bytes_for<float>(n)), 2 * bytes_for<float>(n));
    float* src = c.take<float>(n);
    float* dst = c.take<float>(n);
    GPU_CHECK(cudaMemsetAsync(src, 0x3c, bytes, g_gpu.stream));
    const auto copy = [&] { GPU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_gpu.stream)); };
    (void)event_seconds(copy); // warm-up
    double total = 0.0;
    for (auto _ : state) {
        const double s = event_seconds(copy);
        state.SetIterationTime(s);
        total += s;
    }
    GPU_CHECK(cudaStreamSynchronize(g_gpu.stream));
    report(state, 8.0, l, total, -1.0);
}

//! ct_f draws the default mask definition (4: ARS-7 bit planes), ct_f_v3 the
//! previous default (Philox bit planes), so one run compares the two on the card.
enum class mask_kind { dense, ct_f, ct_f_v3, ct_d };

template <mask_kind K>
using view_t = std::conditional_t<K == mask_kind::dense, childtune::dense_view,
                                  std::conditional_t<K == mask_kind::ct_d, childtune::fixed_view, childtune::bernoulli_view>>;

constexpr double keep_probability = 0.3; // p_F and p_D
constexpr childtune::adamw::options adamw_options{.lr = 1e-3, .weight_decay = 0.01, .flavour = childtune::adamw_flavour::torch};

//! One fused AdamW step of the batch; `check_pointers` asks the adapter to
//! verify every pointer is device memory first (its default).
template <class Policy, class Batch>
void adamw_step(const Policy& policy, const Batch& batch, bool check_pointers) {
    ::childtune::thrust::step<childtune::adamw>(policy, adamw_options, {}, batch,
                                               check_pointers ? ::childtune::thrust::memory_check::on
                                                              : ::childtune::thrust::memory_check::off);
}

//! One AdamW step per iteration over every tensor of `l` in one batch; P the
//! parameter/gradient type, fp32 state. The warm-up step checks the pointers;
//! timed steps check them only when `check_pointers`.
template <class P, mask_kind K>
void adamw_case(benchmark::State& state, const layout& l, bool check_pointers) {
    using view = view_t<K>;
    using tensor = ::childtune::thrust::tensor_step<P, float, view>;
    (void)copy_probe_gbps(); // before carving: the probe uses the arena too
    const std::size_t n = l.storage, words = (n + 63) / 64;
    const std::size_t need = 2 * bytes_for<P>(n) + 2 * bytes_for<float>(n) +
                             (K == mask_kind::ct_d ? bytes_for<std::uint64_t>(words) : 0);
    carver c(g_arena.acquire(need), need);
    P* p = c.take<P>(n);
    P* g = c.take<P>(n);
    float* m = c.take<float>(n);
    float* v = c.take<float>(n);
    std::uint64_t* bits = K == mask_kind::ct_d ? c.take<std::uint64_t>(words) : nullptr;

    const auto policy = on_stream();
    ::thrust::tabulate(policy, p, p + n, param_value<P>{});
    ::thrust::tabulate(policy, g, g + n, grad_value<P>{});
    GPU_CHECK(cudaMemsetAsync(m, 0, n * sizeof(float), g_gpu.stream));
    GPU_CHECK(cudaMemsetAsync(v, 0, n * sizeof(float), g_gpu.stream));
    if constexpr (K == mask_kind::ct_d)
        ::thrust::tabulate(policy, bits, bits + words,
                           fixed_mask_word{childtune::bernoulli{keep_probability, 7}.view(0, 0), n});
    GPU_CHECK(cudaStreamSynchronize(g_gpu.stream));

    const childtune::bernoulli ct_f{keep_probability, 42}, ct_f_v3{keep_probability, 42, 3};
    std::vector<std::uint32_t> keys;
    for (const auto& t : l.tensors) keys.push_back(childtune::stable_tensor_key(t.name));
    const auto view_at = [&](std::size_t k, std::uint64_t step) -> view {
        if constexpr (K == mask_kind::dense) return childtune::dense{}.view();
        else if constexpr (K == mask_kind::ct_f) return ct_f.view(keys[k], step);
        else if constexpr (K == mask_kind::ct_f_v3) return ct_f_v3.view(keys[k], step);
        //! One mask over the whole storage; each tensor's view starts at its offset.
        else return childtune::fixed_view(bits, n, l.tensors[k].offset);
    };
    std::vector<tensor> batch;
    for (std::size_t k = 0; k < l.tensors.size(); ++k) {
        const auto& t = l.tensors[k];
        batch.push_back({t.name, p + t.offset, g + t.offset, {m + t.offset, v + t.offset}, t.size, view_at(k, 1), 1, true});
    }
    std::uint64_t step = 1;
    const auto set_step = [&] {
        for (std::size_t k = 0; k < batch.size(); ++k) {
            batch[k].mask = view_at(k, step);
            batch[k].step = step;
            batch[k].fresh_state = step == 1;
        }
    };
    const auto run = [&] { adamw_step(policy, batch, check_pointers); };

    (void)event_seconds([&] { adamw_step(policy, batch, true); }); // warm-up: step 1 (fresh state)
    double total = 0.0;
    for (auto _ : state) {
        ++step;
        set_step(); // host bookkeeping, outside the timed interval
        const double s = event_seconds(run);
        state.SetIterationTime(s);
        total += s;
    }
    GPU_CHECK(cudaStreamSynchronize(g_gpu.stream));

    //! The cheap correctness guard: no parameter became NaN/Inf, and the state moved.
    const auto bad = ::thrust::count_if(policy, p, p + n, is_nonfinite<P>{});
    const auto moved = ::thrust::count_if(policy, m, m + n, is_nonzero{});
    if (bad != 0)
        throw std::runtime_error(std::to_string(bad) + " parameters are NaN/Inf after " + std::to_string(step) + " steps");
    if (moved == 0) throw std::runtime_error("no first moment is nonzero after " + std::to_string(step) + " steps: the step did not run");

    const double bytes_per_elem = (sizeof(P) == 2 ? 22.0 : 28.0) + (K == mask_kind::ct_d ? 1.0 / 8.0 : 0.0);
    report(state, bytes_per_elem, l, total, static_cast<double>(moved) / static_cast<double>(l.total));
}

template <class P, mask_kind K>
void flat_case(benchmark::State& state) { adamw_case<P, K>(state, flat_layout(), false); }
template <class P, mask_kind K>
void model_case(benchmark::State& state) { adamw_case<P, K>(state, model_layout(), false); }
void model_dense_checked(benchmark::State& state) { adamw_case<float, mask_kind::dense>(state, model_layout(), true); }

using case_fn = void (*)(benchmark::State&);

//! Runs a case; an exception (CUDA error, childtune::error, NaN check) fails that
//! case only, and makes the process exit non-zero.
void guarded(benchmark::State& state, const std::string& name, case_fn fn) {
    try {
        fn(state);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_step: %s failed: %s\n", name.c_str(), e.what());
        g_failed = true;
        state.SkipWithError(e.what());
    }
}

void add_context(const cudaDeviceProp& prop, int device) {
    int mem_khz = 0, bus_bits = 0, runtime = 0, driver = 0;
    GPU_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device));
    GPU_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
    GPU_CHECK(cudaRuntimeGetVersion(&runtime));
    GPU_CHECK(cudaDriverGetVersion(&driver));
    //! HBM transfers on both clock edges: 2 x clock x bus width.
    const double peak_gbps = 2.0 * mem_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    const auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    const layout& model = model_layout();
    benchmark::AddCustomContext("gpu", prop.name);
    benchmark::AddCustomContext("gpu_compute_capability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
    benchmark::AddCustomContext("gpu_sms", std::to_string(prop.multiProcessorCount));
    benchmark::AddCustomContext("gpu_memory_bytes", std::to_string(prop.totalGlobalMem));
    benchmark::AddCustomContext("gpu_memory_clock_mhz", std::to_string(mem_khz / 1000));
    benchmark::AddCustomContext("gpu_memory_bus_bits", std::to_string(bus_bits));
    benchmark::AddCustomContext("gpu_peak_bandwidth_gbps", std::to_string(peak_gbps));
    benchmark::AddCustomContext("gpu_l2_bytes", std::to_string(prop.l2CacheSize));
    benchmark::AddCustomContext("gpu_ecc", prop.ECCEnabled ? "on" : "off");
    benchmark::AddCustomContext("cuda_runtime", version(runtime));
    benchmark::AddCustomContext("cuda_driver", version(driver));
    benchmark::AddCustomContext("thrust_version", std::to_string(THRUST_MAJOR_VERSION) + "." +
                                                      std::to_string(THRUST_MINOR_VERSION) + "." +
                                                      std::to_string(THRUST_SUBMINOR_VERSION));
    benchmark::AddCustomContext("host_compiler", __VERSION__);
    benchmark::AddCustomContext("flat_n", std::to_string(flat_n()));
    benchmark::AddCustomContext("model_tensors", std::to_string(model.tensors.size()));
    benchmark::AddCustomContext("model_params", std::to_string(model.total));
}

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    int devices = 0;
    const cudaError_t found = cudaGetDeviceCount(&devices);
    if (found != cudaSuccess || devices == 0) {
        std::fprintf(stderr, "gpu_step: no CUDA device (cudaGetDeviceCount: %s, %d devices); this benchmark needs an NVIDIA GPU\n",
                     cudaGetErrorString(found), devices);
        return 1;
    }
    try {
        const int device = 0; // CUDA_VISIBLE_DEVICES picks the card
        GPU_CHECK(cudaSetDevice(device));
        cudaDeviceProp prop{};
        GPU_CHECK(cudaGetDeviceProperties(&prop, device));
        add_context(prop, device);
        //! A blocking stream (not cudaStreamNonBlocking): whatever Thrust queues on
        //! the legacy default stream inside thrust::step (its scratch allocation
        //! and free) stays ordered with the benchmark stream.
        GPU_CHECK(cudaStreamCreate(&g_gpu.stream));
        GPU_CHECK(cudaEventCreate(&g_gpu.start));
        GPU_CHECK(cudaEventCreate(&g_gpu.stop));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_step: setup failed: %s\n", e.what());
        return 1;
    }

    using childtune::bfloat16;
    const std::vector<std::pair<std::string, case_fn>> cases = {
        {"copy/device_to_device", &copy_device_to_device},
        {"adamw/fp32/dense", &flat_case<float, mask_kind::dense>},
        {"adamw/fp32/ct_f", &flat_case<float, mask_kind::ct_f>},
        {"adamw/fp32/ct_f+mask_v3", &flat_case<float, mask_kind::ct_f_v3>},
        {"adamw/fp32/ct_d", &flat_case<float, mask_kind::ct_d>},
        {"adamw/bf16/dense", &flat_case<bfloat16, mask_kind::dense>},
        {"adamw/bf16/ct_f", &flat_case<bfloat16, mask_kind::ct_f>},
        {"adamw/bf16/ct_d", &flat_case<bfloat16, mask_kind::ct_d>},
        {"model/adamw/fp32/dense", &model_case<float, mask_kind::dense>},
        {"model/adamw/fp32/ct_f", &model_case<float, mask_kind::ct_f>},
        {"model/adamw/fp32/ct_f+mask_v3", &model_case<float, mask_kind::ct_f_v3>},
        {"model/adamw/fp32/ct_d", &model_case<float, mask_kind::ct_d>},
        {"model/adamw/fp32/dense+memory_check", &model_dense_checked},
    };
    for (const auto& [name, fn] : cases)
        benchmark::RegisterBenchmark(name.c_str(), [name = name, fn = fn](benchmark::State& s) { guarded(s, name, fn); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    try {
        g_arena.release();
        GPU_CHECK(cudaEventDestroy(g_gpu.start));
        GPU_CHECK(cudaEventDestroy(g_gpu.stop));
        GPU_CHECK(cudaStreamDestroy(g_gpu.stream));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpu_step: cleanup failed: %s\n", e.what());
        g_failed = true;
    }
    return g_failed ? 1 : 0;
}
