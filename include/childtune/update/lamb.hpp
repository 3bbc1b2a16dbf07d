#pragma once
//! \file
//! LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning: Training
//! BERT in 76 minutes", Algorithm 2): Adam's direction plus decoupled weight
//! decay, scaled per tensor by the trust ratio ||p|| / ||u||. Two state buffers
//! and a per-tensor phase (update_rule in concepts.hpp):
//!
//!     m  = beta1*m + (1 - beta1)*g,   v = beta2*v + (1 - beta2)*g²
//!     r  = (m / bc1) / (sqrt(v / bc2) + eps)          (bc = 1 - beta^t, or 1)
//!     u  = r + wd*p
//!     p -= lr * phi(||p|| / ||u||) * u                (ratio 1 when a norm is 0)
//!
//! phi is the identity, or min(ratio, trust_clip) when trust_clip > 0.
//!
//! How the mask enters the norms: u is the update the step applies to each
//! element, so ||u|| is the norm of exactly what moves. With the mask on the
//! gradient (the reference) a masked element's g is 0 (kept ones are divided by
//! p for Child-Tuning_F) and it still moves by its momentum and decay, which
//! count in ||u||. With mask_target::update, r is applied (divided by p) to kept
//! elements only and is 0 in ||u|| elsewhere; decay, and its term in u, follow
//! `masking_options::decay_masked`. ||p|| is the norm of the whole parameter,
//! whatever the mask. Both norms are sums in double in the canonical order of
//! exec/tensor_sum.hpp, so every executor gives the same ratio.

#include <childtune/config.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace childtune {

//! LAMB (You et al., 2019): Adam's direction plus decoupled weight decay, scaled
//! per tensor by the trust ratio ||p|| / ||u||; two state buffers (m, v) and a
//! per-tensor phase that sums the two norms.
struct lamb {
    //! `apply` and `reduce` are always inlined, so the AVX2 and AVX-512 kernels may instantiate them.
    static constexpr bool inline_apply = true;
    //! The rule's name in state files; a file written by another rule is refused.
    static constexpr std::string_view name = "lamb";
    static constexpr std::size_t max_state_buffers = 2; //!< exp_avg, exp_avg_sq
    //! exp_avg_sq (buffer 1) is never negative: 8-bit state uses the unsigned map for it.
    static constexpr unsigned nonnegative_state_buffers = 0b10;
    static constexpr std::size_t reduction_count = 2;   //!< ||p||², ||u||²

    //! Per-group hyperparameters.
    struct options {
        //! Learning rate.
        double lr = 1e-3;
        //! Decay rate of the first moment m.
        double beta1 = 0.9;
        //! Decay rate of the second moment v.
        double beta2 = 0.999;
        //! Added to sqrt(v/bc2) in the denominator of r.
        double eps = 1e-6;
        //! Weight decay, added to the update u (so it counts in ||u||); 0 skips it.
        double weight_decay = 0.01;
        //! Divide the moments by bc = 1 - beta^t; false uses bc = 1.
        bool correct_bias = true;
        double trust_clip = 0.0; //!< upper bound of the trust ratio; 0: none

        //! Memberwise: lets the optimizer skip work when options did not change.
        friend bool operator==(const options&, const options&) = default;
    };

    //! Throws childtune::error naming `group` for a negative or non-finite lr, eps,
    //! weight decay or trust_clip, or a beta outside [0, 1).
    static void validate(const options& o, std::string_view group) {
        detail::validate_adam_family(o, group);
        detail::require_finite_nonnegative(o.trust_clip, "trust_clip", group);
    }
    //! Always 2 (m and v).
    static std::size_t state_buffers(const options&) { return 2; }
    //! Masked moments stay zero with the mask on the gradient, and eps > 0 keeps
    //! their r at 0: compact Child-Tuning_D state is exact.
    static bool compact_state_exact(const options& o, masking_options m) {
        return m.target == mask_target::gradient && o.eps > 0.0;
    }

    //! Number of doubles `to_values` writes per group into state files.
    static constexpr std::size_t option_count = 7;
    //! The options as doubles in state-file order: lr, beta1, beta2, eps,
    //! weight_decay, correct_bias (0 or 1), trust_clip.
    static std::array<double, option_count> to_values(const options& o) {
        return {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.correct_bias ? 1.0 : 0.0, o.trust_clip};
    }
    //! The inverse of `to_values`.
    static options from_values(const std::array<double, option_count>& v) {
        return {v[0], v[1], v[2], v[3], v[4], v[5] != 0.0, v[6]};
    }

    //! Per-step scalars; `finish` completes them once the tensor's norms are known.
    template <class S>
    struct step_constants {
        //! @{
        //! The betas and their complements, eps, the bias corrections and wd, in S.
        S beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bc1, bc2, weight_decay;
        //! @}
        //! wd != 0 (the decay term is skipped entirely otherwise).
        bool decay;
        //! @{
        //! lr and trust_clip, kept in double for `finish`.
        double lr, trust_clip;
        //! @}
        S neg_step; //!< -lr * trust ratio, set by finish()
    };

    //! `step` is the 1-based count of steps this tensor has taken, including this one.
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t step, bool /*fresh_state*/) {
        const double t = static_cast<double>(step);
        const double bc1 = o.correct_bias ? 1.0 - std::pow(o.beta1, t) : 1.0;
        const double bc2 = o.correct_bias ? 1.0 - std::pow(o.beta2, t) : 1.0;
        return {static_cast<S>(o.beta1), static_cast<S>(1.0 - o.beta1), static_cast<S>(o.beta2),
                static_cast<S>(1.0 - o.beta2), static_cast<S>(o.eps), static_cast<S>(bc1), static_cast<S>(bc2),
                static_cast<S>(o.weight_decay), o.weight_decay != 0.0, o.lr, o.trust_clip, static_cast<S>(-o.lr)};
    }

    //! The update u of one element (see the file comment), from the new moments.
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static V direction(const step_constants<S>& c, const element_mask<K, V>& e, const V& p, const V& m,
                                           const V& v) {
        using detail::select;
        using detail::vdiv;
        using detail::vsqrt;
        const V r = vdiv(vdiv(m, V(c.bc1)), vsqrt(vdiv(v, V(c.bc2))) + V(c.eps));
        V u = select(e.update_kept, e.rescaled_update(r), V(S(0)));
        if (c.decay) u = select(e.decay_kept, u + V(c.weight_decay) * p, u);
        return u;
    }

    //! The phase's element pass: new moments, and the terms of ||p||² and ||u||².
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void reduce(const step_constants<S>& c, const element_mask<K, V>& e, const V& p, const V& gradient,
                                           V (&state)[2], V (&terms)[2]) {
        using detail::select;
        V& m = state[0];
        V& v = state[1];
        V g = select(e.gradient_kept, e.rescaled_gradient(gradient), V(S(0)));
        m = m * V(c.beta1) + V(c.one_minus_beta1) * g;
        v = v * V(c.beta2) + V(c.one_minus_beta2) * g * g;
        const V u = direction(c, e, p, m, v);
        terms[0] = p * p;
        terms[1] = u * u;
    }

    //! The trust ratio from the tensor's sums: ||p|| / ||u||, 1 when either is 0.
    template <class S>
    static void finish(step_constants<S>& c, const std::array<double, reduction_count>& sums) {
        const double weight = std::sqrt(sums[0]), update = std::sqrt(sums[1]);
        double ratio = weight > 0.0 && update > 0.0 ? weight / update : 1.0;
        if (c.trust_clip > 0.0 && ratio > c.trust_clip) ratio = c.trust_clip;
        c.neg_step = static_cast<S>(-c.lr * ratio);
    }

    //! The element pass after the phase: the moments are already updated.
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const element_mask<K, V>& e, V& p, const V& /*g*/,
                                          V (&state)[2]) {
        using detail::mask_or;
        using detail::select;
        const V u = direction(c, e, p, state[0], state[1]);
        p = select(c.decay ? mask_or(e.update_kept, e.decay_kept) : e.update_kept, p + V(c.neg_step) * u, p);
    }
};

} // namespace childtune
