#pragma once
//! \file
//! AdamW with decoupled weight decay (Loshchilov & Hutter, 2019), in the two
//! flavours Child-Tuning users meet:
//!
//! - `adamw_flavour::torch` — `torch.optim.AdamW` / `torch::optim::AdamW`:
//!   decay first (`p *= 1 - lr*wd`), then `p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`.
//! - `adamw_flavour::legacy` — the HuggingFace-style AdamW the published
//!   Child-Tuning optimizer is built on: `p -= lr*sqrt(bc2)/bc1 * m / (sqrt(v) + eps)`,
//!   then decay with the updated value, `p -= lr*wd*p` (only when wd > 0).
//!
//! The operation order inside each formula follows ATen's kernels (addcmul,
//! addcdiv) so results match the reference to float rounding.

#include <childtune/config.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace childtune {

//! Which AdamW the `adamw` rule computes (the file comment gives both formulas).
enum class adamw_flavour : std::uint8_t { torch = 0, legacy = 1 };

//! AdamW with decoupled weight decay, in torch's or the published Child-Tuning
//! optimizer's flavour (`options::flavour`). Two state buffers per element: m and v.
struct adamw {
    //! `apply` is always inlined, so the AVX2 and AVX-512 kernels may instantiate it.
    static constexpr bool inline_apply = true;
    //! The rule's name in state files; a file written by another rule is refused.
    static constexpr std::string_view name = "adamw";
    static constexpr std::size_t max_state_buffers = 2; //!< exp_avg, exp_avg_sq
    //! exp_avg_sq (buffer 1) is never negative: 8-bit state uses the unsigned map for it.
    static constexpr unsigned nonnegative_state_buffers = 0b10;

    //! Per-group hyperparameters. Defaults are `torch.optim.AdamW`'s; the published
    //! Child-Tuning optimizer uses `flavour = legacy` (and its own eps, often 1e-6).
    struct options {
        //! Learning rate.
        double lr = 1e-3;
        //! Decay rate of the first moment m.
        double beta1 = 0.9;
        //! Decay rate of the second moment v.
        double beta2 = 0.999;
        //! Added to the denominator (after sqrt(v), or after sqrt(v)/sqrt(bc2) for torch).
        double eps = 1e-8;
        //! Decoupled weight decay; 0 skips the decay entirely.
        double weight_decay = 1e-2;
        //! torch (decay first) or legacy (decay after the update); see adamw_flavour.
        adamw_flavour flavour = adamw_flavour::torch;
        //! Bias correction; the legacy optimizer lets users turn it off.
        bool correct_bias = true;

        //! Memberwise: lets the optimizer skip work when options did not change.
        friend bool operator==(const options&, const options&) = default;
    };

    //! Throws childtune::error naming `group` for a negative or non-finite lr, eps or
    //! weight decay, a beta outside [0, 1), or an unknown flavour.
    static void validate(const options& o, std::string_view group) {
        detail::validate_adam_family(o, group);
        if (o.flavour != adamw_flavour::torch && o.flavour != adamw_flavour::legacy)
            detail::fail("group '" + std::string(group) + "': unknown AdamW flavour");
    }
    //! Always 2 (m and v).
    static std::size_t state_buffers(const options&) { return 2; }
    //! Whether a masked-out element's moments stay exactly zero, so compact
    //! Child-Tuning_D state gives the full-state results bit for bit: the mask must
    //! zero the gradient (not the update), and eps > 0 keeps 0/(sqrt(0)+eps) = 0
    //! (with eps = 0 the full-state step writes NaN there, as the reference does).
    static bool compact_state_exact(const options& o, masking_options m) {
        return m.target == mask_target::gradient && o.eps > 0.0;
    }

    //! Number of doubles `to_values` writes per group into state files.
    static constexpr std::size_t option_count = 7;
    //! The options as doubles in state-file order: lr, beta1, beta2, eps, weight_decay,
    //! flavour (0 torch, 1 legacy), correct_bias (0 or 1).
    static std::array<double, option_count> to_values(const options& o) {
        return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, static_cast<double>(o.flavour), o.correct_bias ? 1.0 : 0.0};
    }
    //! The inverse of `to_values`; an unknown flavour value is kept for validate() to reject.
    static options from_values(const std::array<double, option_count>& v) {
        return {v[0], v[1], v[2], v[3], v[4], flavour_from_value(v[5]), v[6] != 0.0};
    }
    //! The flavour as stored (a double read from a file): anything but 0 or 1
    //! becomes a value validate() rejects. Converting an out-of-range double to an
    //! integer would be undefined behaviour (found by fuzz/optimizer_state.cpp).
    static adamw_flavour flavour_from_value(double v) {
        if (v == 0.0) return adamw_flavour::torch;
        if (v == 1.0) return adamw_flavour::legacy;
        return static_cast<adamw_flavour>(0xff);
    }

    //! Per-step scalars, computed in double as the reference does, then rounded
    //! once to the state type.
    template <class S>
    struct step_constants {
        //! @{
        //! Factors computed once per step in double and rounded to S.
        S beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
        //! @}
        S neg_step_size;    //!< -lr/bc1 (torch) or -lr*sqrt(bc2)/bc1 (legacy)
        S bc2_sqrt;         //!< torch flavour divides sqrt(v) by it
        S decay_factor;     //!< torch: 1 - lr*wd
        S neg_lr_wd;        //!< legacy: -lr*wd
        //! Legacy flavour (decay after the update, eps added to sqrt(v)).
        bool legacy;
        bool decay;         //!< wd != 0 (both flavours skip decay entirely otherwise)
    };

    //! `step` is the 1-based count of steps this tensor has taken, including this one.
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t step, bool /*fresh_state*/) {
        const double t = static_cast<double>(step);
        const double bc1 = o.correct_bias ? 1.0 - std::pow(o.beta1, t) : 1.0;
        const double bc2 = o.correct_bias ? 1.0 - std::pow(o.beta2, t) : 1.0;
        const bool legacy = o.flavour == adamw_flavour::legacy;
        const double step_size = legacy ? o.lr * std::sqrt(bc2) / bc1 : o.lr / bc1;
        return {static_cast<S>(o.beta1), static_cast<S>(1.0 - o.beta1), static_cast<S>(o.beta2),
                static_cast<S>(1.0 - o.beta2), static_cast<S>(o.eps), static_cast<S>(-step_size),
                static_cast<S>(std::sqrt(bc2)), static_cast<S>(1.0 - o.lr * o.weight_decay),
                static_cast<S>(-o.lr * o.weight_decay), legacy, o.weight_decay != 0.0};
    }

    //! One element (or one vector of lanes).
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const element_mask<K, V>& e, V& p, const V& gradient, V (&state)[2]) {
        using detail::select;
        using detail::vdiv;
        using detail::vsqrt;
        V& m = state[0];
        V& v = state[1];
        if (c.decay && !c.legacy) p = select(e.decay_kept, p * V(c.decay_factor), p);
        V g = select(e.gradient_kept, e.rescaled_gradient(gradient), V(S(0)));
        m = m * V(c.beta1) + V(c.one_minus_beta1) * g;
        v = v * V(c.beta2) + V(c.one_minus_beta2) * g * g;
        const V denom = c.legacy ? vsqrt(v) + V(c.eps) : vsqrt(v) / V(c.bc2_sqrt) + V(c.eps);
        const V delta = vdiv(V(c.neg_step_size) * m, denom);
        p = select(e.update_kept, p + e.rescaled_update(delta), p);
        if (c.decay && c.legacy) p = select(e.decay_kept, p + V(c.neg_lr_wd) * p, p);
    }
};

} // namespace childtune
