#pragma once
//! \file
//! Runs one step of many tensors in host memory: splits them into work items,
//! fetches each item's keep words, and runs the element pass on an execution
//! backend; for rules with a per-tensor phase, the reduce pass, the per-tensor
//! sums and the rule's `finish` come first. The memory belongs to the caller (the
//! CPU executor's own buffers, or LibTorch's tensors).

#include <childtune/concepts.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/kernel.hpp>
#include <childtune/exec/quantised_state.hpp>
#include <childtune/exec/tensor_sum.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/tensor_view.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace childtune::detail {

//! The element passes of a rule for one parameter type, behind function
//! pointers: instantiated where a tensor of that type is registered, so a
//! program pays compile time only for the types it uses.
template <class Rule>
struct cpu_kernel_table {
    template <class S>
    using pass = void (*)(cpu_isa, const pass_arguments<Rule, S>&, void*, const void*, void* const*, std::size_t,
                          std::size_t, std::size_t);
    pass<float> update_f, reduce_f;
    pass<double> update_d, reduce_d;
};

template <class Rule, element_pass Pass, class S, class P>
void erased_pass(cpu_isa isa, const pass_arguments<Rule, S>& a, void* param, const void* grad, void* const* state,
                 std::size_t buffers, std::size_t begin, std::size_t end) {
    step_operands<P, S> x{static_cast<P*>(param), static_cast<const P*>(grad), {}};
    for (std::size_t b = 0; b < max_rule_state_buffers; ++b) x.state[b] = static_cast<S*>(state[b]);
    cpu_element_pass<Rule, Pass, S, P>(isa, a, x, buffers, begin, end);
}

template <class Rule, class P>
constexpr cpu_kernel_table<Rule> make_cpu_kernel_table() {
    if constexpr (rule_reduction_count<Rule>() > 0)
        return {&erased_pass<Rule, element_pass::update, float, P>, &erased_pass<Rule, element_pass::reduce, float, P>,
                &erased_pass<Rule, element_pass::update, double, P>, &erased_pass<Rule, element_pass::reduce, double, P>};
    else
        return {&erased_pass<Rule, element_pass::update, float, P>, nullptr,
                &erased_pass<Rule, element_pass::update, double, P>, nullptr};
}
//! The kernel table of Rule for parameter type P. A function template that is
//! not inline, so that `extern template` (childtune/instantiate.hpp) can keep
//! its instantiation, most of a translation unit's compile time, out of every
//! translation unit of a program but one.
template <class Rule, class P>
const cpu_kernel_table<Rule>& cpu_kernels() {
    static constexpr cpu_kernel_table<Rule> table = make_cpu_kernel_table<Rule, P>();
    return table;
}

//! One tensor's step in host memory.
template <class Rule>
struct cpu_job {
    const cpu_kernel_table<Rule>* kernels = nullptr;
    void* param = nullptr;
    const void* grad = nullptr;
    void* state[max_rule_state_buffers] = {};
    std::size_t buffers = 0;
    std::size_t size = 0;
    bool double_state = false;
    const std::uint32_t* kept_before = nullptr; //!< compact layout
    bool quantised = false;                     //!< 8-bit blockwise state (float steps)
    std::size_t param_bytes = 0;                //!< bytes of one parameter (quantised windows)
    const any_mask_view* mask = nullptr;
    typename Rule::template step_constants<float> constants_f{};
    typename Rule::template step_constants<double> constants_d{};
};

//! Work items cover at most this many elements: a power of two number of
//! 64-element blocks (exec/tensor_sum.hpp), small enough to balance threads,
//! large enough that scheduling costs nothing.
inline constexpr std::size_t cpu_chunk_elements = std::size_t{1} << 16;
//! Below this many elements a step runs on the calling thread: waking a thread
//! team would cost more than the work (and fight the model's own threads).
inline constexpr std::size_t cpu_parallel_min_elements = std::size_t{1} << 17;
//! Keep words are fetched this many at a time (1024 elements), between passes
//! over the memory they mask.
inline constexpr std::size_t cpu_words_per_fetch = 16;

struct cpu_work_item {
    std::size_t job, begin, end;
};

inline std::vector<cpu_work_item> cpu_work_items(const std::size_t* sizes, std::size_t count) {
    std::vector<cpu_work_item> items;
    for (std::size_t j = 0; j < count; ++j)
        for (std::size_t b = 0; b < sizes[j]; b += cpu_chunk_elements)
            items.push_back({j, b, std::min(sizes[j], b + cpu_chunk_elements)});
    return items;
}

//! Runs `f(i)` for every item, on `backend` or (few elements) on this thread.
template <class Backend, class F>
void run_cpu_items(const Backend& backend, const std::vector<cpu_work_item>& items, F&& f) {
    std::size_t elements = 0;
    for (const auto& it : items) elements += it.end - it.begin;
    if (elements < cpu_parallel_min_elements) serial_backend{}.parallel_for(items.size(), f);
    else backend.parallel_for(items.size(), f);
}

//! Elements [begin, end) of job `j`: pass `Pass`, keep words fetched in runs.
template <class Rule, element_pass Pass>
void run_cpu_range(cpu_isa isa, const cpu_job<Rule>& j, masking_options masking, std::size_t begin, std::size_t end,
                   double* block_sums) {
    std::uint64_t fetched[cpu_words_per_fetch];
    constexpr std::size_t reductions = rule_reduction_count<Rule>();
    // Child-Tuning_F's keep words drawn inside the pass (exec/kernel.hpp): one
    // pass over the whole range. 8-bit state goes by windows of at most
    // cpu_words_per_fetch words, each drawing its own (a window starts a
    // 1024-element block of the tensor, so a 128-element group unless the view
    // is offset). Ranges and windows not starting a 128-element group fetch the
    // words between passes, in runs.
    const auto range_draws = j.quantised ? any_mask_view::pass_draws{} : j.mask->draws_from(begin);
    const std::size_t run_length = range_draws.params ? end - begin : 64 * cpu_words_per_fetch;
    for (std::size_t first = begin; first < end; first += run_length) {
        const std::size_t last = std::min(end, first + run_length);
        const auto draws = j.quantised ? j.mask->draws_from(first) : range_draws;
        const std::uint64_t* words = nullptr;
        if (!j.mask->dense() && !draws.params) {
            words = j.mask->words_in_place(first);
            if (!words) {
                j.mask->words(first, (last - first + 63) / 64, fetched);
                words = fetched;
            }
        }
        double* sums = Pass == element_pass::reduce ? block_sums + (first - begin) / 64 * reductions : nullptr;
        const bool d = j.double_state;
        if (d) {
            const pass_arguments<Rule, double> a{&j.constants_d, masking, j.mask->keep_probability(), words,
                                                 j.kept_before,  sums,    draws.params,               draws.first_word};
            (Pass == element_pass::update ? j.kernels->update_d : j.kernels->reduce_d)(isa, a, j.param, j.grad, j.state,
                                                                                      j.buffers, first, last);
        } else {
            pass_arguments<Rule, float> a{&j.constants_f, masking, static_cast<float>(j.mask->keep_probability()),
                                          words,          j.kept_before, sums, draws.params, draws.first_word};
            const auto pass = Pass == element_pass::update ? j.kernels->update_f : j.kernels->reduce_f;
            if (j.quantised) { // decode, the same pass on the window (from its element 0), encode
                blockwise8_window<Rule>(j.state, j.buffers, j.size, j.kept_before, first, last,
                                        [&](void* const* state, const std::uint32_t* kept) {
                                            a.kept_before = kept;
                                            pass(isa, a, static_cast<std::byte*>(j.param) + first * j.param_bytes,
                                                 static_cast<const std::byte*>(j.grad) + first * j.param_bytes, state,
                                                 j.buffers, 0, last - first);
                                        });
            } else {
                pass(isa, a, j.param, j.grad, j.state, j.buffers, first, last);
            }
        }
    }
}

//! The per-tensor phase: reduce pass over every item, per-item sums combined
//! per tensor in the canonical order, then the rule's `finish` per tensor.
template <class Rule, class Backend>
void run_cpu_phase(cpu_isa isa, std::vector<cpu_job<Rule>>& jobs, masking_options masking,
                   const std::vector<cpu_work_item>& items, const Backend& backend) {
    constexpr std::size_t R = rule_reduction_count<Rule>();
    std::vector<double> item_sums(items.size() * R, 0.0);
    run_cpu_items(backend, items, [&](std::size_t w) {
        const auto& it = items[w];
        std::array<double, cpu_chunk_elements / 64 * R> blocks; // on the stack: f must not throw
        run_cpu_range<Rule, element_pass::reduce>(isa, jobs[it.job], masking, it.begin, it.end, blocks.data());
        pairwise_levels(blocks.data(), (it.end - it.begin + 63) / 64, R);
        std::copy_n(blocks.data(), R, item_sums.data() + w * R);
    });
    for (std::size_t first = 0; first < items.size();) {
        std::size_t last = first;
        while (last < items.size() && items[last].job == items[first].job) ++last;
        pairwise_levels(item_sums.data() + first * R, last - first, R);
        std::array<double, R> sums{};
        std::copy_n(item_sums.data() + first * R, R, sums.begin());
        auto& j = jobs[items[first].job];
        if (j.double_state) Rule::finish(j.constants_d, sums);
        else Rule::finish(j.constants_f, sums);
        first = last;
    }
}

//! One step of `jobs` (a rule's per-tensor phase included) on `backend`.
template <class Rule, class Backend>
void run_cpu_jobs(std::vector<cpu_job<Rule>>& jobs, masking_options masking, const Backend& backend,
                  cpu_isa isa = best_cpu_isa()) {
    std::vector<std::size_t> sizes(jobs.size());
    for (std::size_t j = 0; j < jobs.size(); ++j) sizes[j] = jobs[j].size;
    const auto items = cpu_work_items(sizes.data(), sizes.size());
    if constexpr (rule_reduction_count<Rule>() > 0) {
        // A tensor of no elements still finishes its phase (on zero sums).
        for (auto& j : jobs)
            if (j.size == 0) {
                const std::array<double, rule_reduction_count<Rule>()> zero{};
                if (j.double_state) Rule::finish(j.constants_d, zero);
                else Rule::finish(j.constants_f, zero);
            }
        run_cpu_phase(isa, jobs, masking, items, backend);
    }
    run_cpu_items(backend, items, [&](std::size_t w) {
        const auto& it = items[w];
        run_cpu_range<Rule, element_pass::update>(isa, jobs[it.job], masking, it.begin, it.end, nullptr);
    });
}

} // namespace childtune::detail
