#pragma once
//! \file
//! Adam with L2 weight decay added to the gradient, as `torch::optim::Adam`:
//! `g += wd*p; m, v updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`.
//! With gradient masking the L2 term is added after the mask (the mask applies to
//! `p.grad`, the decay term is part of the step), for every entry unless
//! `masking_options::decay_masked` is false.

#include <childtune/config.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace childtune {

//! Adam as `torch::optim::Adam`, with L2 weight decay added to the masked gradient
//! (not decoupled: use `adamw` for that). Two state buffers per element: m and v.
struct adam {
    //! `apply` is always inlined, so the AVX2 and AVX-512 kernels may instantiate it.
    static constexpr bool inline_apply = true;
    //! The rule's name in state files; a file written by another rule is refused.
    static constexpr std::string_view name = "adam";
    //! m and v.
    static constexpr std::size_t max_state_buffers = 2;
    //! v (buffer 1) is never negative: 8-bit state uses the unsigned map for it.
    static constexpr unsigned nonnegative_state_buffers = 0b10;

    //! Per-group hyperparameters; defaults are torch's.
    struct options {
        //! Learning rate.
        double lr = 1e-3;
        //! Decay rate of the first moment m.
        double beta1 = 0.9;
        //! Decay rate of the second moment v.
        double beta2 = 0.999;
        //! Added to sqrt(v)/sqrt(bc2) in the denominator.
        double eps = 1e-8;
        //! L2 weight decay, added to the gradient after the mask (see masking_options::decay_masked).
        double weight_decay = 0.0;

        //! Memberwise: lets the optimizer skip work when options did not change.
        friend bool operator==(const options&, const options&) = default;
    };

    //! Throws childtune::error naming `group` for a negative or non-finite lr, eps or
    //! weight decay, or a beta outside [0, 1).
    static void validate(const options& o, std::string_view group) {
        detail::validate_adam_family(o, group);
    }
    //! Always 2 (m and v).
    static std::size_t state_buffers(const options&) { return 2; }

    //! Number of doubles `to_values` writes per group into state files.
    static constexpr std::size_t option_count = 5;
    //! The options as doubles in state-file order: lr, beta1, beta2, eps, weight_decay.
    static std::array<double, option_count> to_values(const options& o) {
        return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay};
    }
    //! The inverse of `to_values`.
    static options from_values(const std::array<double, option_count>& v) { return {v[0], v[1], v[2], v[3], v[4]}; }

    //! Per-step scalars, computed in double and rounded once to the state type S.
    template <class S>
    struct step_constants {
        //! @{
        //! The betas and their complements, eps, -lr/bc1, sqrt(bc2) and wd, in S.
        S beta1, one_minus_beta1, beta2, one_minus_beta2, eps, neg_step_size, bc2_sqrt, weight_decay;
        //! @}
        //! wd != 0 (the L2 term is skipped entirely otherwise).
        bool decay;
    };

    //! `step` is the 1-based count of steps this tensor has taken, including this one.
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t step, bool /*fresh_state*/) {
        const double t = static_cast<double>(step);
        const double bc1 = 1.0 - std::pow(o.beta1, t);
        const double bc2 = 1.0 - std::pow(o.beta2, t);
        return {static_cast<S>(o.beta1), static_cast<S>(1.0 - o.beta1), static_cast<S>(o.beta2),
                static_cast<S>(1.0 - o.beta2), static_cast<S>(o.eps), static_cast<S>(-o.lr / bc1),
                static_cast<S>(std::sqrt(bc2)), static_cast<S>(o.weight_decay), o.weight_decay != 0.0};
    }

    //! One element (or one vector of lanes).
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const element_mask<K, V>& e, V& p, const V& gradient, V (&state)[2]) {
        using detail::select;
        using detail::vdiv;
        using detail::vsqrt;
        V& m = state[0];
        V& v = state[1];
        V g = select(e.gradient_kept, e.rescaled_gradient(gradient), V(S(0)));
        if (c.decay) g = select(e.decay_kept, g + V(c.weight_decay) * p, g);
        m = m * V(c.beta1) + V(c.one_minus_beta1) * g;
        v = v * V(c.beta2) + V(c.one_minus_beta2) * g * g;
        const V denom = vsqrt(v) / V(c.bc2_sqrt) + V(c.eps);
        const V delta = vdiv(V(c.neg_step_size) * m, denom);
        p = select(e.update_kept, p + e.rescaled_update(delta), p);
    }
};

} // namespace childtune
