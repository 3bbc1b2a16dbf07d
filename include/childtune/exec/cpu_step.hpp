#pragma once
//! \file
//! One range of one tensor through the fused CPU step, on a chosen instruction
//! set: the entry point the kernel tests compare instruction sets and state
//! layouts with (optimizers go through exec/cpu_runner.hpp). `cpu_isa::scalar`
//! runs the scalar definition itself, which dispatch() skips on x86-64.

#include <childtune/exec/cpu_runner.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/exec/kernel.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace childtune::detail {

//! Where a range's keep decisions come from. `words`: fetched from the view
//! before the pass, for any mask. `drawn_in_pass`: as optimizers run
//! Child-Tuning_F (exec/cpu_runner.hpp), the pass draws its keep words
//! itself when the view is Bernoulli and the range starts a 128-element group
//! (any_mask_view::draws_from); other ranges and masks fetch words.
enum class keep_source : std::uint8_t { words, drawn_in_pass };

//! Pass `Pass` of `Rule` over elements [begin, end) (begin a multiple of 64) of
//! one tensor with `buffers` state buffers, full state layout; the reduce pass
//! writes Rule::reduction_count sums per 64-element block to `block_sums`.
template <class Rule, element_pass Pass, class S, class P, class MaskView>
void cpu_pass_range(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                    step_operands<P, S> x, std::size_t buffers, std::size_t begin, std::size_t end, cpu_isa isa,
                    keep_source source, double* block_sums) {
    const any_mask_view view(mask);
    const auto draws = source == keep_source::drawn_in_pass ? view.draws_from(begin) : any_mask_view::pass_draws{};
    std::vector<std::uint64_t> words((end - begin + 63) / 64);
    if (!draws.params) view.words(begin, words.size(), words.data());
    const std::uint64_t* fetched = view.dense() || draws.params ? nullptr : words.data();
    const pass_arguments<Rule, S> a{&c,      options,    static_cast<S>(view.keep_probability()), fetched,
                                    nullptr, block_sums, draws.params,                            draws.first_word};
    if (isa == cpu_isa::scalar) {
        (void)with_state_buffers<Rule>(buffers, [&](auto count) {
            element_pass_kernel<Rule, Pass, decltype(count)::value, S, P>::template run<cpu_isa::scalar>(&a, x, begin, end);
        });
        return;
    }
    cpu_element_pass<Rule, Pass, S, P>(isa, a, x, buffers, begin, end);
}

//! The update pass of `Rule` over elements [begin, end) (begin a multiple of 64)
//! of one tensor with `buffers` state buffers, full state layout.
template <class Rule, class S, class P, class MaskView>
void cpu_step_range(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                    step_operands<P, S> x, std::size_t buffers, std::size_t begin, std::size_t end,
                    cpu_isa isa = best_cpu_isa(), keep_source source = keep_source::words) {
    cpu_pass_range<Rule, element_pass::update, S, P>(c, options, mask, x, buffers, begin, end, isa, source, nullptr);
}

//! The reduce pass of a rule with a per-tensor phase (LAMB's norms) over
//! [begin, end): updates the state and writes Rule::reduction_count sums per
//! 64-element block, in element order, to `block_sums`.
template <class Rule, class S, class P, class MaskView>
void cpu_reduce_range(const typename Rule::template step_constants<S>& c, masking_options options, const MaskView& mask,
                      step_operands<P, S> x, std::size_t buffers, std::size_t begin, std::size_t end, double* block_sums,
                      cpu_isa isa = best_cpu_isa(), keep_source source = keep_source::words) {
    cpu_pass_range<Rule, element_pass::reduce, S, P>(c, options, mask, x, buffers, begin, end, isa, source, block_sums);
}

//! Pass `Pass` of `Rule` with compact Child-Tuning_D state: `words` are the
//! fixed mask's packed words (of the whole tensor), `kept_before` their prefix
//! counts, and `x.state` points at the compact buffers (Rule::max_state_buffers
//! of them); the reduce pass writes its block sums as cpu_pass_range does.
template <class Rule, element_pass Pass, class S, class P>
void cpu_compact_pass_range(const typename Rule::template step_constants<S>& c, masking_options options,
                            const std::uint64_t* words, const std::uint32_t* kept_before, step_operands<P, S> x,
                            std::size_t begin, std::size_t end, cpu_isa isa, double* block_sums) {
    using kernel = element_pass_kernel<Rule, Pass, Rule::max_state_buffers, S, P>;
    const pass_arguments<Rule, S> a{&c, options, S(1), words + begin / 64, kept_before, block_sums};
    if (isa == cpu_isa::scalar) kernel::template run<cpu_isa::scalar>(&a, x, begin, end);
    else dispatch<kernel>(isa, &a, x, begin, end);
}

//! The update pass with compact Child-Tuning_D state (cpu_compact_pass_range).
template <class Rule, class S, class P>
void cpu_compact_step_range(const typename Rule::template step_constants<S>& c, masking_options options,
                            const std::uint64_t* words, const std::uint32_t* kept_before, step_operands<P, S> x,
                            std::size_t begin, std::size_t end, cpu_isa isa = best_cpu_isa()) {
    cpu_compact_pass_range<Rule, element_pass::update, S, P>(c, options, words, kept_before, x, begin, end, isa, nullptr);
}

//! The reduce pass with compact Child-Tuning_D state: updates the compact state
//! and writes Rule::reduction_count sums per 64-element block to `block_sums`.
template <class Rule, class S, class P>
void cpu_compact_reduce_range(const typename Rule::template step_constants<S>& c, masking_options options,
                              const std::uint64_t* words, const std::uint32_t* kept_before, step_operands<P, S> x,
                              std::size_t begin, std::size_t end, double* block_sums, cpu_isa isa = best_cpu_isa()) {
    cpu_compact_pass_range<Rule, element_pass::reduce, S, P>(c, options, words, kept_before, x, begin, end, isa,
                                                             block_sums);
}

} // namespace childtune::detail
