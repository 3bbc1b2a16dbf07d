#pragma once
//! \file
//! Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms",
//! Algorithm 2): the update is the sign of an interpolation of the momentum and
//! the gradient, so every kept element moves by exactly lr; one state buffer.
//!
//!     p *= 1 - lr*wd                       (decoupled weight decay, when wd > 0)
//!     c  = beta1*m + (1 - beta1)*g
//!     p -= lr * sign(c)
//!     m  = beta2*m + (1 - beta2)*g
//!
//! With gradient masking (mask_target::gradient, the reference) a masked
//! element's g is 0 (kept ones are divided by p for Child-Tuning_F), so it still
//! moves by the sign of its momentum; with mask_target::update only kept
//! elements move (divided by p). Decay follows `masking_options::decay_masked`.

#include <childtune/config.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cstdint>
#include <string_view>

namespace childtune {

//! Lion (Chen et al., 2023): every kept element moves by exactly lr in the
//! direction of sign(beta1*m + (1-beta1)*g); one state buffer (the momentum m).
struct lion {
    //! `apply` is always inlined, so the AVX2 and AVX-512 kernels may instantiate it.
    static constexpr bool inline_apply = true;
    //! The rule's name in state files; a file written by another rule is refused.
    static constexpr std::string_view name = "lion";
    static constexpr std::size_t max_state_buffers = 1; //!< exp_avg

    //! Per-group hyperparameters; defaults are the paper's (lr 1e-4, betas 0.9/0.99).
    struct options {
        //! Learning rate: the step of every moving element.
        double lr = 1e-4;
        //! Interpolation weight of the momentum in the sign's argument.
        double beta1 = 0.9;
        //! Decay rate of the momentum.
        double beta2 = 0.99;
        //! Decoupled weight decay (p *= 1 - lr*wd before the update); 0 skips it.
        double weight_decay = 0.0;

        //! Memberwise: lets the optimizer skip work when options did not change.
        friend bool operator==(const options&, const options&) = default;
    };

    //! Throws childtune::error naming `group` for a negative or non-finite lr or weight
    //! decay, or a beta outside [0, 1).
    static void validate(const options& o, std::string_view group) {
        detail::require_finite_nonnegative(o.lr, "lr", group);
        detail::require_beta(o.beta1, "beta1", group);
        detail::require_beta(o.beta2, "beta2", group);
        detail::require_finite_nonnegative(o.weight_decay, "weight_decay", group);
    }
    //! Always 1 (the momentum).
    static std::size_t state_buffers(const options&) { return 1; }
    //! A masked element's momentum stays zero when the mask is on the gradient,
    //! and sign(0) = 0 leaves it in place: compact Child-Tuning_D state is exact.
    static bool compact_state_exact(const options&, masking_options m) { return m.target == mask_target::gradient; }

    //! Number of doubles `to_values` writes per group into state files.
    static constexpr std::size_t option_count = 4;
    //! The options as doubles in state-file order: lr, beta1, beta2, weight_decay.
    static std::array<double, option_count> to_values(const options& o) { return {o.lr, o.beta1, o.beta2, o.weight_decay}; }
    //! The inverse of `to_values`.
    static options from_values(const std::array<double, option_count>& v) { return {v[0], v[1], v[2], v[3]}; }

    //! Per-step scalars, rounded once to the state type S.
    template <class S>
    struct step_constants {
        //! @{
        //! The betas and their complements, -lr and 1 - lr*wd, in S.
        S beta1, one_minus_beta1, beta2, one_minus_beta2, neg_lr, decay_factor;
        //! @}
        //! wd != 0 (the decay is skipped entirely otherwise).
        bool decay;
    };

    //! Lion's constants do not depend on the step count.
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t /*step*/, bool /*fresh_state*/) {
        return {static_cast<S>(o.beta1),  static_cast<S>(1.0 - o.beta1), static_cast<S>(o.beta2),
                static_cast<S>(1.0 - o.beta2), static_cast<S>(-o.lr), static_cast<S>(1.0 - o.lr * o.weight_decay),
                o.weight_decay != 0.0};
    }

    //! One element (or one vector of lanes).
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const element_mask<K, V>& e, V& p, const V& gradient, V (&state)[2]) {
        using detail::select;
        V& m = state[0];
        if (c.decay) p = select(e.decay_kept, p * V(c.decay_factor), p);
        V g = select(e.gradient_kept, e.rescaled_gradient(gradient), V(S(0)));
        const V interpolated = m * V(c.beta1) + V(c.one_minus_beta1) * g;
        const V sign = select(interpolated > V(S(0)), V(S(1)), select(interpolated < V(S(0)), V(S(-1)), V(S(0))));
        p = select(e.update_kept, p + e.rescaled_update(V(c.neg_lr) * sign), p);
        m = m * V(c.beta2) + V(c.one_minus_beta2) * g;
    }
};

} // namespace childtune
