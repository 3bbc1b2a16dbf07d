#pragma once
// What the optimizer-step benchmarks share: the problem shapes (one flat tensor
// of N parameters, or a BERT-large-shaped set of tensors), the parameter and
// gradient memory every method of a shape steps, the Child-Tuning masks and
// hyperparameters, peak-memory probes, manual timing and counters, and the
// registry through which each translation unit (the torch-free core methods, the
// LibTorch peers) adds its methods, so that one binary runs every method of one
// shape back to back.
//
// Environment (CI smoke-tests with small values):
//   CHILDTUNE_BENCH_N             flat sizes, comma-separated (default 1Mi,4Mi,16Mi,64Mi)
//   CHILDTUNE_BENCH_MODEL_LAYERS  encoder layers of the model-shaped set (default 24)
//   CHILDTUNE_BENCH_MODEL_HIDDEN  hidden size of the model-shaped set (default 1024)

#include <childtune/exec/backend.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include "bench_env.hpp"
#include "process_memory.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bench {

// 64-byte aligned, uninitialised storage of trivial T; fill() first-touches it in
// parallel so pages are spread as in a training process.
template <class T>
class buffer {
public:
    buffer() = default;
    explicit buffer(std::size_t n) : size_(n) {
        const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
        data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes)));
        if (!data_) throw std::bad_alloc();
    }
    T* data() const { return data_.get(); }
    std::size_t size() const { return size_; }

    template <class F>
    void fill(F value_at) {
        constexpr std::size_t chunk = std::size_t{1} << 16;
        T* d = data_.get();
        const std::size_t n = size_;
        childtune::default_backend{}.parallel_for((n + chunk - 1) / chunk, [&](std::size_t b) {
            const std::size_t end = std::min(n, (b + 1) * chunk);
            for (std::size_t i = b * chunk; i < end; ++i) d[i] = value_at(i);
        });
    }

private:
    struct free_deleter {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, free_deleter> data_;
    std::size_t size_ = 0;
};

inline float param_value(std::size_t i) { return 1.0f - 1e-3f * static_cast<float>(i % 13); }
inline float grad_value(std::size_t i) { return 1e-2f * (static_cast<float>(i % 7) - 3.0f) + 1e-3f; }

// ---- shapes ------------------------------------------------------------------------

struct tensor_spec {
    std::string name;
    std::vector<std::int64_t> dims;
    std::size_t offset = 0; // elements from the start of the shape's buffers (a multiple of 16)
    std::size_t size = 0;
    bool encoder = false; // an encoder-layer tensor: masked by Child-Tuning_D
};

struct shape {
    std::string label;   // the first part of every benchmark name of this shape
    bool model = false;  // the BERT-large-shaped set (else one flat tensor)
    std::size_t total = 0;
    std::size_t storage = 0; // total plus the alignment padding between tensors
    std::size_t layers = 0, hidden = 0; // of the model-shaped set
    std::vector<tensor_spec> tensors;

    void add(std::string name, std::vector<std::int64_t> dims, bool encoder) {
        std::size_t n = 1;
        for (auto d : dims) n *= static_cast<std::size_t>(d);
        tensors.push_back({std::move(name), std::move(dims), storage, n, encoder});
        total += n;
        storage += (n + 15) / 16 * 16;
    }
};

inline std::string size_label(std::size_t n) {
    if (n % (std::size_t{1} << 20) == 0) return std::to_string(n >> 20) + "Mi";
    if (n % (std::size_t{1} << 10) == 0) return std::to_string(n >> 10) + "Ki";
    return std::to_string(n);
}

// One tensor of n parameters, in an encoder layer (masked by every mode).
inline shape flat_shape(std::size_t n) {
    shape s;
    s.label = "N=" + size_label(n);
    s.add("encoder.layer.0.weight", {static_cast<std::int64_t>(n)}, true);
    return s;
}

// BERT-large's parameter set (hidden 1024, 24 layers: about 335 M parameters in
// 393 tensors) with a two-class head: the tensor sizes a fine-tuning step meets.
inline shape model_shape(std::size_t hidden, std::size_t layers) {
    const auto h = static_cast<std::int64_t>(hidden), ffn = 4 * h;
    shape s;
    s.label = "model";
    s.model = true;
    s.layers = layers;
    s.hidden = hidden;
    s.add("embeddings.word_embeddings.weight", {30522, h}, false);
    s.add("embeddings.position_embeddings.weight", {512, h}, false);
    s.add("embeddings.token_type_embeddings.weight", {2, h}, false);
    s.add("embeddings.LayerNorm.weight", {h}, false);
    s.add("embeddings.LayerNorm.bias", {h}, false);
    for (std::size_t l = 0; l < layers; ++l) {
        const std::string p = "encoder.layer." + std::to_string(l) + ".";
        for (const char* w : {"attention.self.query.", "attention.self.key.", "attention.self.value.", "attention.output.dense."}) {
            s.add(p + w + "weight", {h, h}, true);
            s.add(p + w + "bias", {h}, true);
        }
        s.add(p + "attention.output.LayerNorm.weight", {h}, true);
        s.add(p + "attention.output.LayerNorm.bias", {h}, true);
        s.add(p + "intermediate.dense.weight", {ffn, h}, true);
        s.add(p + "intermediate.dense.bias", {ffn}, true);
        s.add(p + "output.dense.weight", {h, ffn}, true);
        s.add(p + "output.dense.bias", {h}, true);
        s.add(p + "output.LayerNorm.weight", {h}, true);
        s.add(p + "output.LayerNorm.bias", {h}, true);
    }
    s.add("pooler.dense.weight", {h, h}, false);
    s.add("pooler.dense.bias", {h}, false);
    s.add("classifier.weight", {2, h}, false);
    s.add("classifier.bias", {2}, false);
    return s;
}

inline const std::vector<std::size_t>& flat_sizes() {
    static const std::vector<std::size_t> sizes = bench_env::sizes_or(
        "CHILDTUNE_BENCH_N", {std::size_t{1} << 20, std::size_t{4} << 20, std::size_t{16} << 20, std::size_t{64} << 20});
    return sizes;
}
inline std::size_t largest_flat_size() { return *std::max_element(flat_sizes().begin(), flat_sizes().end()); }

inline const std::vector<shape>& shapes() {
    static const std::vector<shape> all = [] {
        std::vector<shape> s;
        for (std::size_t n : flat_sizes()) s.push_back(flat_shape(n));
        s.push_back(model_shape(bench_env::size_or("CHILDTUNE_BENCH_MODEL_HIDDEN", 1024),
                                bench_env::size_or("CHILDTUNE_BENCH_MODEL_LAYERS", 24)));
        return s;
    }();
    return all;
}

// ---- the memory every method of a shape steps ---------------------------------------------

// Parameters and gradients of one shape (fp32), and its Child-Tuning_D masks.
// Methods that change the gradients in place (the reference steps) restore them
// with refill_grad() before they return, so every method sees the same values.
class problem {
public:
    explicit problem(const shape& s) : shape_(&s), param_(s.storage), grad_(s.storage) {
        param_.fill(param_value);
        refill_grad();
    }
    const shape& layout() const { return *shape_; }
    float* param(const tensor_spec& t) const { return param_.data() + t.offset; }
    float* grad(const tensor_spec& t) const { return grad_.data() + t.offset; }
    void refill_grad() { grad_.fill(grad_value); }

    // A Fisher-like fixed mask (a Bernoulli(p) draw, fixed once) for every
    // encoder tensor: the bits Child-Tuning_D keeps. Built on first use.
    const childtune::mask_set& fisher_masks(double keep) {
        if (!masks_) {
            childtune::mask_set set;
            const childtune::bernoulli draw{keep, 7};
            for (const auto& t : shape_->tensors) {
                if (!t.encoder) continue;
                childtune::bit_mask bits(t.size);
                const auto view = draw.view(childtune::stable_tensor_key(t.name), 0);
                auto words = bits.words();
                childtune::default_backend{}.parallel_for(words.size(), [&](std::size_t w) { words[w] = view.bits64(64 * w); });
                set.add(t.name, childtune::bit_mask(t.size, std::vector<std::uint64_t>(words.begin(), words.end())));
            }
            masks_ = std::move(set);
        }
        return *masks_;
    }

private:
    const shape* shape_;
    buffer<float> param_, grad_;
    std::optional<childtune::mask_set> masks_;
};


// ---- Child-Tuning settings shared by every method ---------------------------------------

enum class mode { dense, ct_f, ct_d };

constexpr double keep_probability = 0.3; // p_F and p_D
constexpr double learning_rate = 2e-5, weight_decay = 0.01, adam_eps = 1e-8;

// The mask mode of childtune's optimizers for a method.
inline childtune::mask_mode mask_for(mode m, problem& prob) {
    switch (m) {
    case mode::ct_f: return childtune::bernoulli{keep_probability, 42};
    case mode::ct_d: return childtune::fixed{prob.fisher_masks(keep_probability)};
    default: return childtune::dense{};
    }
}

// Dense steps use torch's AdamW (the dense peer is torch::optim::AdamW); the
// Child-Tuning steps use the legacy AdamW of the published Child-Tuning optimizer
// (their peers are its transcription). Both flavours cost the same.
inline childtune::adamw::options adamw_options(mode m) {
    return {.lr = learning_rate, .eps = adam_eps, .weight_decay = weight_decay,
            .flavour = m == mode::dense ? childtune::adamw_flavour::torch : childtune::adamw_flavour::legacy};
}

// childtune::optimizer<adamw> over the shape's tensors, as every core method
// builds it: one group of encoder tensors (masked) and one of the rest (masked
// by Child-Tuning_F only, as the reference does). It has stepped once, so its
// state is allocated before any timed step. `prob` is problem_for(s, m).
inline std::unique_ptr<childtune::optimizer<childtune::adamw>>
core_optimizer(problem& prob, const shape& s, mode m, childtune::optimizer_options options,
               std::uint32_t mask_version = childtune::bernoulli_default_version) {
    options.allow_empty = true; // a flat shape has no tensor in the masked group "other" (Child-Tuning_F)
    auto opt = std::make_unique<childtune::optimizer<childtune::adamw>>(
        m == mode::ct_f ? childtune::mask_mode{childtune::bernoulli{keep_probability, 42, mask_version}} : mask_for(m, prob),
        options);
    const auto encoder = opt->add_group("encoder", adamw_options(m), true);
    const auto rest = opt->add_group("other", adamw_options(m), m == mode::ct_f);
    for (const auto& t : s.tensors)
        opt->add_parameter<float>(t.encoder ? encoder : rest, t.name, {prob.param(t), t.size}, {prob.grad(t), t.size});
    opt->step();
    return opt;
}

// Whether a tensor is masked: the reference's Child-Tuning_F masks every tensor
// its optimizer holds; its Child-Tuning_D masks the encoder layers (the Fisher
// scores are computed for parameters named "layer"), the rest trains densely.
inline bool masked_in(mode m, const tensor_spec& t) { return m == mode::ct_f || (m == mode::ct_d && t.encoder); }

// The problem of `s`, built on first use (with its Child-Tuning_D masks when
// `m` needs them, so that a method's memory figure does not count the cache).
// Only one shape's memory lives at a time: the previous one is freed first.
inline problem& problem_for(const shape& s, mode m = mode::dense) {
    static std::unique_ptr<problem> current;
    if (!current || &current->layout() != &s) {
        current.reset();
        current = std::make_unique<problem>(s);
    }
    if (m == mode::ct_d) (void)current->fisher_masks(keep_probability);
    return *current;
}

// ---- timing and counters ----------------------------------------------------------------------

// Seconds one call of `step` takes, its stores made visible first.
template <class Step>
double seconds_of(Step&& step) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    benchmark::ClobberMemory();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times `step` per iteration (manual time); `before` runs untimed before each step.
template <class Step, class Before>
void time_steps(benchmark::State& state, Step&& step, Before&& before) {
    for (auto _ : state) {
        before();
        state.SetIterationTime(seconds_of(step));
    }
}
template <class Step>
void time_steps(benchmark::State& state, Step&& step) {
    time_steps(state, std::forward<Step>(step), [] {});
}

// The counters of every step benchmark. `bytes_per_param` is the traffic of one
// parameter (28 for fp32 AdamW, 22 for 16-bit parameters with fp32 state, 12 per
// element for the triad); `base_rss` is what begin_memory() returned.
inline void report(benchmark::State& state, const shape& s, double bytes_per_param, std::size_t base_rss, double threads) {
    const auto n = static_cast<double>(s.total);
    using C = benchmark::Counter;
    state.counters["N"] = n;
    state.counters["tensors"] = static_cast<double>(s.tensors.size());
    state.counters["bytes_per_param"] = bytes_per_param;
    state.counters["params/s"] = C(n, C::kIsIterationInvariantRate, C::OneK::kIs1000);
    state.counters["bytes/s"] = C(n * bytes_per_param, C::kIsIterationInvariantRate, C::OneK::kIs1000);
    const std::size_t peak = peak_rss_bytes();
    state.counters["peak_rss"] = C(static_cast<double>(peak), C::kDefaults, C::OneK::kIs1024);
    state.counters["extra_mem"] = C(static_cast<double>(peak > base_rss ? peak - base_rss : 0), C::kDefaults, C::OneK::kIs1024);
    state.counters["workers"] = threads;
}

inline double core_threads() { return static_cast<double>(childtune::default_backend{}.concurrency()); }

// ---- registry -----------------------------------------------------------------------------------

// Where a method runs: on every flat shape, on the largest flat shape only, on
// the model-shaped set.
enum where : unsigned { flat = 1u, largest_flat = 2u, model = 4u };

struct method {
    int order; // position among the methods of a shape (peers before ours)
    std::string name;
    void (*run)(benchmark::State&, const shape&);
    unsigned where;
};

inline std::vector<method>& methods() {
    static std::vector<method> all;
    return all;
}
inline std::vector<std::pair<std::string, std::string>>& context() {
    static std::vector<std::pair<std::string, std::string>> all;
    return all;
}

// Checks that peers compute the same update as childtune (run by main() when
// CHILDTUNE_BENCH_VERIFY is set, as the CI smoke test does): each returns an
// empty string or what differs.
inline std::vector<std::pair<std::string, std::string (*)()>>& checks() {
    static std::vector<std::pair<std::string, std::string (*)()>> all;
    return all;
}

// Adds a method from a translation unit's static initialisation.
struct add_method {
    explicit add_method(method m) { methods().push_back(std::move(m)); }
};
struct add_check {
    add_check(std::string name, std::string (*check)()) { checks().emplace_back(std::move(name), check); }
};
struct add_context {
    add_context(std::string key, std::string value) { context().emplace_back(std::move(key), std::move(value)); }
};

// Registers "<shape>/<method>" for every shape, in shape order, the methods of a
// shape by `order`: all methods of one shape run back to back on its memory.
inline void register_all() {
    if (std::getenv("CHILDTUNE_BENCH_VERIFY")) {
        bool ok = true;
        for (const auto& [name, check] : checks()) {
            const std::string error = check();
            std::fprintf(stderr, "check %s: %s\n", name.c_str(), error.empty() ? "same update" : error.c_str());
            ok = ok && error.empty();
        }
        if (!ok) std::exit(1);
    }
    auto sorted = methods();
    std::stable_sort(sorted.begin(), sorted.end(), [](const method& a, const method& b) { return a.order < b.order; });
    for (const auto& s : shapes()) {
        const bool largest = !s.model && s.total == largest_flat_size();
        for (const auto& m : sorted) {
            const bool runs = s.model ? (m.where & model) : ((m.where & flat) || (largest && (m.where & largest_flat)));
            if (!runs) continue;
            const shape* sp = &s;
            auto fn = m.run;
            benchmark::RegisterBenchmark((s.label + "/" + m.name).c_str(), [fn, sp](benchmark::State& st) { fn(st, *sp); })
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
        }
    }
    for (const auto& [key, value] : context()) benchmark::AddCustomContext(key, value);
}

} // namespace bench
