// The optimizer step, torch-free methods: the stream-triad probe (the roofline),
// AdamW as a plain C++ loop (what a user writes by hand), and childtune's fused
// step (dense AdamW, Child-Tuning_F, Child-Tuning_D; fp32, and 16-bit parameters
// with fp32 state) through childtune::optimizer. step_torch.cpp adds the LibTorch
// peers to the same binary when LibTorch is found.
//
// fp32 AdamW moves 28 bytes per parameter (read param, grad, m, v; write param,
// m, v); 16-bit parameters and gradients with fp32 state move 22; the triad moves
// 12 bytes per element as STREAM counts them (its write-allocate traffic is not
// counted). This file is compiled at -O2, no -march, no fast-math: the flags a
// user's training code has.

#include <childtune/exec/backend.hpp>
#include <childtune/numeric/blockwise8.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/adamw.hpp>

#include "step_support.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using bench::mode;

// STREAM triad a = b + s*c over as many elements as the shape has parameters:
// the memory-bandwidth roofline of this machine (vectorised, both cores).
void triad(benchmark::State& state, const bench::shape& s) {
    const std::size_t base = bench::begin_memory();
    const std::size_t n = s.total;
    bench::buffer<float> a(n), b(n), c(n);
    a.fill([](std::size_t) { return 0.0f; });
    b.fill([](std::size_t i) { return bench::param_value(i); });
    c.fill([](std::size_t i) { return bench::grad_value(i); });
    float* pa = a.data();
    const float* pb = b.data();
    const float* pc = c.data();
    constexpr std::size_t chunk = std::size_t{1} << 16;
    bench::time_steps(state, [&] {
        childtune::default_backend{}.parallel_for((n + chunk - 1) / chunk, [&](std::size_t w) {
            const std::size_t end = std::min(n, (w + 1) * chunk);
            // g++'s -O2 cost model leaves this loop scalar (it needs an epilogue and an
            // alias check), which would halve the roofline: ask for vectors explicitly.
#if defined(_OPENMP)
#pragma omp simd
#endif
            for (std::size_t i = w * chunk; i < end; ++i) pa[i] = pb[i] + 1.5f * pc[i];
        });
    });
    bench::report(state, s, 12.0, base, bench::core_threads());
}

// The reference AdamW (legacy flavour) as a plain loop per tensor, parallel
// within each tensor. std::sqrt must set errno, so at -O2 the compiler keeps this
// loop scalar.
void plain_loop(benchmark::State& state, const bench::shape& s) {
    auto& prob = bench::problem_for(s);
    const std::size_t base = bench::begin_memory();
    std::vector<bench::buffer<float>> m, v;
    for (const auto& t : s.tensors) {
        m.emplace_back(t.size);
        v.emplace_back(t.size);
        m.back().fill([](std::size_t) { return 0.0f; });
        v.back().fill([](std::size_t) { return 0.0f; });
    }
    const float b1 = 0.9f, b2 = 0.999f, eps = static_cast<float>(bench::adam_eps);
    const float decay = static_cast<float>(bench::learning_rate * bench::weight_decay);
    int t = 0;
    constexpr std::size_t chunk = std::size_t{1} << 16;
    bench::time_steps(state, [&] {
        ++t;
        const float step = static_cast<float>(bench::learning_rate * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t)));
        for (std::size_t k = 0; k < s.tensors.size(); ++k) {
            const auto& spec = s.tensors[k];
            float* p = prob.param(spec);
            const float* g = prob.grad(spec);
            float* mk = m[k].data();
            float* vk = v[k].data();
            const std::size_t n = spec.size;
            childtune::default_backend{}.parallel_for((n + chunk - 1) / chunk, [&](std::size_t w) {
                const std::size_t end = std::min(n, (w + 1) * chunk);
                for (std::size_t i = w * chunk; i < end; ++i) {
                    mk[i] = b1 * mk[i] + (1 - b1) * g[i];
                    vk[i] = b2 * vk[i] + (1 - b2) * g[i] * g[i];
                    p[i] -= step * mk[i] / (std::sqrt(vk[i]) + eps);
                    p[i] -= decay * p[i];
                }
            });
        }
    });
    bench::report(state, s, 28.0, base, bench::core_threads());
}

// Child-Tuning_F's keep bits alone (the default definition 4 draws them with
// ARS-7, the earlier ones with Philox4x32-10), exactly as the fused step draws
// them, for every parameter of the shape, on the step's threads, touching no
// tensor (bytes_per_param = 0). It is the compute CT_F adds to the dense step;
// when both cores are busy computing, CT_F's time is about dense + this.
// `version` is the mask definition (1: four decisions per Philox call, 2: eight,
// 3: bit planes, about fifteen; 4: bit planes of consecutive elements, ARS-7).
void philox_keep_bits(benchmark::State& state, const bench::shape& s, std::uint32_t version) {
    const std::size_t base = bench::begin_memory();
    const childtune::bernoulli mask{bench::keep_probability, 42, version};
    constexpr std::size_t chunk = std::size_t{1} << 16;
    std::vector<std::size_t> first_chunk; // chunk index where each tensor starts
    std::size_t chunks = 0;
    for (const auto& t : s.tensors) {
        first_chunk.push_back(chunks);
        chunks += (t.size + chunk - 1) / chunk;
    }
    std::vector<std::uint64_t> sink(chunks);
    std::uint64_t step = 0;
    bench::time_steps(state, [&] {
        ++step;
        childtune::default_backend{}.parallel_for(chunks, [&](std::size_t c) {
            const std::size_t k = static_cast<std::size_t>(
                std::upper_bound(first_chunk.begin(), first_chunk.end(), c) - first_chunk.begin() - 1);
            const auto& t = s.tensors[k];
            const auto view = mask.view(childtune::stable_tensor_key(t.name), step);
            const std::size_t begin = (c - first_chunk[k]) * chunk, end = std::min(t.size, begin + chunk);
            std::uint64_t acc = 0, words[64]; // by runs of keep words, as the fused step reads them
            for (std::size_t w = begin; w < end; w += 64 * 64) {
                const std::size_t n = std::min<std::size_t>(64, (end - w + 63) / 64);
                view.words(w, n, words);
                for (std::size_t j = 0; j < n; ++j) acc ^= words[j];
            }
            sink[c] = acc;
        });
        benchmark::DoNotOptimize(sink.data());
    });
    bench::report(state, s, 0.0, base, bench::core_threads());
}

// childtune's optimizer (bench::core_optimizer) stepping the shape's tensors.
void core_step(benchmark::State& state, const bench::shape& s, mode m, childtune::optimizer_options options,
               std::uint32_t mask_version = childtune::bernoulli_default_version) {
    auto& prob = bench::problem_for(s, m);
    const std::size_t base = bench::begin_memory();
    const auto opt = bench::core_optimizer(prob, s, m, options, mask_version);
    bench::time_steps(state, [&] { opt->step(); });
    bench::report(state, s, 28.0, base, bench::core_threads());
}

constexpr childtune::optimizer_options unchecked{.on_nonfinite = childtune::nonfinite_policy::unchecked};
constexpr childtune::optimizer_options checked{}; // the default: NaN/Inf pre-scan, raise
constexpr childtune::optimizer_options compact{.on_nonfinite = childtune::nonfinite_policy::unchecked,
                                               .compact_fixed_state = true};

void core_dense(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::dense, unchecked); }
void core_dense_checked(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::dense, checked); }
void core_ct_f(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_f, unchecked); }
// Child-Tuning_F with 0.1's mask definition (32-bit draws), for the comparison.
void core_ct_f_v1(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_f, unchecked, 1); }
// ... and with definition 2 (16-bit draws), the default before definition 3.
void core_ct_f_v2(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_f, unchecked, 2); }
// ... and with definition 3 (Philox bit planes), the default before definition 4.
void core_ct_f_v3(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_f, unchecked, 3); }
void keep_bits(benchmark::State& st, const bench::shape& s) {
    philox_keep_bits(st, s, childtune::bernoulli_default_version);
}
void keep_bits_v1(benchmark::State& st, const bench::shape& s) { philox_keep_bits(st, s, 1); }
void keep_bits_v2(benchmark::State& st, const bench::shape& s) { philox_keep_bits(st, s, 2); }
void keep_bits_v3(benchmark::State& st, const bench::shape& s) { philox_keep_bits(st, s, 3); }
void core_ct_d(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_d, unchecked); }
// Child-Tuning_D with state for the kept elements only (opt-in): GB/s still
// counts 28 B per parameter, so it is the dense-equivalent rate.
void core_ct_d_compact(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_d, compact); }
// 8-bit blockwise state (optimizer_options::storage): GB/s still counts 28 B
// per parameter (the fp32-state equivalent), so time ratios read directly.
constexpr childtune::optimizer_options state8{.on_nonfinite = childtune::nonfinite_policy::unchecked,
                                              .storage = childtune::state_storage::blockwise8};
void core_dense_8bit(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::dense, state8); }
void core_ct_f_8bit(benchmark::State& st, const bench::shape& s) { core_step(st, s, mode::ct_f, state8); }

// The 8-bit state's conversions alone, as an 8-bit step runs them for each state
// buffer: every parameter's worth of moments (Adam-like values over several
// decades) quantised to the signed map block by block (absmax, divide, encode)
// or dequantised (decode, multiply), on the step's threads. bytes_per_param
// counts 4 + 1 + 1/64 (floats, codes, scales); the time per value is the figure.
void blockwise8_convert(benchmark::State& state, const bench::shape& s, bool encode) {
    namespace cd = childtune::detail;
    const std::size_t base = bench::begin_memory();
    const std::size_t n = s.total;
    bench::buffer<float> x(n);
    x.fill([](std::size_t i) { return bench::grad_value(i) * std::pow(10.0f, -static_cast<float>(i % 7)); });
    std::vector<std::uint8_t> codes(n);
    std::vector<float> scales(cd::blockwise8_blocks(n));
    const cd::dynamic_map& map = cd::signed_dynamic_map();
    float* px = x.data();
    constexpr std::size_t chunk = std::size_t{1} << 16; // a multiple of the block
    const std::size_t chunks = (n + chunk - 1) / chunk;
    auto run = [&](bool quantise) {
        childtune::default_backend{}.parallel_for(chunks, [&](std::size_t c) {
            for (std::size_t b = c * chunk; b < std::min(n, (c + 1) * chunk); b += cd::blockwise8_block) {
                const std::size_t q = b / cd::blockwise8_block, len = std::min(cd::blockwise8_block, n - b);
                if (quantise) scales[q] = cd::quantise_block(map, px + b, len, codes.data() + b);
                else cd::dequantise_block(map, codes.data() + b, len, scales[q], px + b);
            }
        });
    };
    run(true); // codes and scales for the decoder
    bench::time_steps(state, [&] {
        run(encode);
        benchmark::DoNotOptimize(px);
        benchmark::DoNotOptimize(codes.data());
    });
    bench::report(state, s, 5.0 + 1.0 / 64.0, base, bench::core_threads());
}
void blockwise8_quantise(benchmark::State& st, const bench::shape& s) { blockwise8_convert(st, s, true); }
void blockwise8_dequantise(benchmark::State& st, const bench::shape& s) { blockwise8_convert(st, s, false); }

// 16-bit parameters and gradients with fp32 state (chosen automatically): one
// flat tensor, its own memory (22 bytes per parameter).
template <class P>
void mixed_step(benchmark::State& state, const bench::shape& s, mode m) {
    const std::size_t base = bench::begin_memory();
    const auto& t = s.tensors.front();
    bench::buffer<P> p(t.size), g(t.size);
    p.fill([](std::size_t i) { return P(bench::param_value(i)); });
    g.fill([](std::size_t i) { return P(bench::grad_value(i)); });
    childtune::optimizer<childtune::adamw> opt(m == mode::ct_f ? childtune::mask_mode{childtune::bernoulli{bench::keep_probability, 42}}
                                                               : childtune::mask_mode{childtune::dense{}},
                                               {.on_nonfinite = childtune::nonfinite_policy::unchecked});
    const auto group = opt.add_group("encoder", bench::adamw_options(m), true);
    opt.add_parameter<P>(group, t.name, {p.data(), t.size}, {g.data(), t.size});
    opt.step();
    bench::time_steps(state, [&] { opt.step(); });
    bench::report(state, s, 22.0, base, bench::core_threads());
}

void bf16_dense(benchmark::State& st, const bench::shape& s) { mixed_step<childtune::bfloat16>(st, s, mode::dense); }
void bf16_ct_f(benchmark::State& st, const bench::shape& s) { mixed_step<childtune::bfloat16>(st, s, mode::ct_f); }
void fp16_dense(benchmark::State& st, const bench::shape& s) { mixed_step<childtune::float16>(st, s, mode::dense); }
void fp16_ct_f(benchmark::State& st, const bench::shape& s) { mixed_step<childtune::float16>(st, s, mode::ct_f); }

using bench::add_method;
constexpr unsigned everywhere = bench::flat | bench::model;
const add_method m_triad{{0, "triad", &triad, everywhere}};
const add_method m_plain{{10, "plain_loop/adamw", &plain_loop, everywhere}};
const add_method m_dense{{30, "childtune/dense", &core_dense, everywhere}};
const add_method m_dense_checked{{31, "childtune/dense+nan_check", &core_dense_checked, everywhere}};
const add_method m_ct_f{{32, "childtune/ct_f", &core_ct_f, everywhere}};
const add_method m_ct_d{{33, "childtune/ct_d", &core_ct_d, everywhere}};
const add_method m_ct_d_compact{{34, "childtune/ct_d+compact_state", &core_ct_d_compact, everywhere}};
const add_method m_dense_8bit{{37, "childtune/dense+8bit_state", &core_dense_8bit, everywhere}};
const add_method m_ct_f_8bit{{38, "childtune/ct_f+8bit_state", &core_ct_f_8bit, everywhere}};
const add_method m_ct_f_v1{{35, "childtune/ct_f+mask_v1", &core_ct_f_v1, everywhere}};
const add_method m_quantise8{{43, "blockwise8/quantise", &blockwise8_quantise, bench::flat}};
const add_method m_dequantise8{{44, "blockwise8/dequantise", &blockwise8_dequantise, bench::flat}};
const add_method m_ct_f_v2{{46, "childtune/ct_f+mask_v2", &core_ct_f_v2, everywhere}};
const add_method m_philox{{36, "philox/keep_bits", &keep_bits, everywhere}};
const add_method m_philox_v1{{39, "philox/keep_bits+mask_v1", &keep_bits_v1, everywhere}};
const add_method m_philox_v2{{45, "philox/keep_bits+mask_v2", &keep_bits_v2, everywhere}};
const add_method m_ct_f_v3{{47, "childtune/ct_f+mask_v3", &core_ct_f_v3, everywhere}};
const add_method m_philox_v3{{48, "philox/keep_bits+mask_v3", &keep_bits_v3, everywhere}};
const add_method m_bf16_dense{{50, "childtune/bf16/dense", &bf16_dense, bench::largest_flat}};
const add_method m_bf16_ct_f{{51, "childtune/bf16/ct_f", &bf16_ct_f, bench::largest_flat}};
const add_method m_fp16_dense{{52, "childtune/fp16/dense", &fp16_dense, bench::largest_flat}};
const add_method m_fp16_ct_f{{53, "childtune/fp16/ct_f", &fp16_ct_f, bench::largest_flat}};

} // namespace
