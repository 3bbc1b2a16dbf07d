#pragma once
//! \file
//! Optimizer-wide options and the result of a step, shared by every optimizer
//! front end (CPU, Thrust, LibTorch, sharded).

#include <childtune/error.hpp>
#include <childtune/update/masking.hpp>

#include <cstdint>
#include <string>

namespace childtune {

//! What a step does when a gradient holds NaN or ±Inf.
enum class nonfinite_policy : std::uint8_t {
    raise,     //!< throw childtune::error naming the tensor; nothing is changed
    skip,      //!< change nothing and report the tensor in the step_result
    unchecked, //!< do not scan (saves one read of the gradients per step)
};

//! Precision of the optimizer state.
enum class state_precision : std::uint8_t {
    automatic, //!< double for double parameters, float for all others
    float32,
    float64,
};

//! How the optimizer state (moments, momentum) is stored.
enum class state_storage : std::uint8_t {
    full,       //!< one float (or double) per element and buffer
    //! One byte per element and buffer plus a float scale per block of 256
    //! elements: blockwise dynamic quantisation (Dettmers et al., 2022,
    //! numeric/blockwise8.hpp); about 2.03 bytes per parameter for AdamW
    //! instead of 8. Steps decode, run the rule's element pass in float and
    //! encode again; CPU optimizer only.
    blockwise8,
};

//! Optimizer-wide options, fixed at construction (`optimizer(mask, options)`).
struct optimizer_options {
    //! Where the mask applies and whether masked entries decay (update/masking.hpp).
    masking_options masking{};
    //! What a step does with a NaN or Inf gradient.
    nonfinite_policy on_nonfinite = nonfinite_policy::raise;
    //! Precision of the moments and momentum buffers.
    state_precision precision = state_precision::automatic;
    //! Under a fixed mask (Child-Tuning_D), keep optimizer state only for the kept
    //! elements of masked tensors: about 8·p_D bytes per parameter instead of 8 for
    //! fp32 AdamW, results bit-identical (exec/kernel.hpp). Needs a rule whose
    //! masked moments provably stay zero (AdamW with mask_target::gradient and
    //! eps > 0), and the mask may not change once such state exists.
    bool compact_fixed_state = false;
    //! Let step() run with no tensor registered, or with a masked group that
    //! holds no tensor. Off by default, because both usually mean a mistake (a
    //! name filter with a typo leaves the masked group empty, and the run is then
    //! plain fine-tuning without a word); code that registers tensors
    //! conditionally (a rank's shard of a model) opts in.
    bool allow_empty = false;
    //! Full or 8-bit blockwise state (combines with compact_fixed_state). Needs
    //! float state (not state_precision::float64) and the CPU executor; a tensor
    //! keeps the storage it was given at its first step (or by a file). Last, so
    //! that options written as positional braces before it existed still compile.
    state_storage storage = state_storage::full;
};

//! Where a loaded optimizer takes its hyperparameters from.
enum class hyperparameter_source : std::uint8_t {
    //! The file's: group options (lr, betas, ...), the optimizer-wide and
    //! per-group masks (Bernoulli p, seed and definition, fixed masks) and the masking
    //! options replace this optimizer's, so a resumed run continues exactly as
    //! the saved one would have (what load() always did; the default).
    saved,
    //! This optimizer's, as set since construction (a new learning rate for the
    //! resumed run, another seed): the file gives step counts and state only.
    //! A tensor holding compact Child-Tuning_D state must keep its mask.
    current,
};

//! How load() treats what it reads.
struct load_options {
    //! Whose group options, masks and masking options the loaded optimizer has.
    hyperparameter_source hyperparameters = hyperparameter_source::saved;
};

//! What step() did.
struct step_result {
    //! False when the step was skipped (nonfinite_policy::skip).
    bool applied = true;
    //! When the step was skipped: the first tensor (registration order) whose
    //! gradient held NaN or Inf.
    std::string nonfinite_tensor;
    //! True when the step was applied: `if (!opt.step()) ...`.
    explicit operator bool() const { return applied; }
};

namespace detail {
inline void validate_optimizer_options(const optimizer_options& o) {
    if (o.masking.target != mask_target::gradient && o.masking.target != mask_target::update)
        fail("optimizer options: unknown mask target");
    if (o.on_nonfinite > nonfinite_policy::unchecked) fail("optimizer options: unknown nonfinite policy");
    if (o.precision > state_precision::float64) fail("optimizer options: unknown state precision");
    if (o.storage > state_storage::blockwise8) fail("optimizer options: unknown state storage");
    if (o.storage == state_storage::blockwise8 && o.precision == state_precision::float64)
        fail("optimizer options: 8-bit blockwise state (state_storage::blockwise8) decodes to float; it cannot be "
             "combined with state_precision::float64");
}
inline void validate_load_options(const load_options& o) {
    if (o.hyperparameters > hyperparameter_source::current) fail("load options: unknown hyperparameter source");
}
} // namespace detail

} // namespace childtune
