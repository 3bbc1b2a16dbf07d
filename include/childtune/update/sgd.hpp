#pragma once
//! \file
//! SGD with momentum, dampening, Nesterov and L2 weight decay, as
//! `torch::optim::SGD`: `d = g + wd*p; buf = d (first step) or mom*buf + (1-damp)*d;
//! d = nesterov ? d + mom*buf : buf; p -= lr*d`.

#include <childtune/config.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/update/masking.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace childtune {

//! SGD as `torch::optim::SGD` (momentum, dampening, Nesterov, L2 weight decay added
//! to the masked gradient); one state buffer, and only when momentum != 0.
struct sgd {
    //! `apply` is always inlined, so the AVX2 and AVX-512 kernels may instantiate it.
    static constexpr bool inline_apply = true;
    //! The rule's name in state files; a file written by another rule is refused.
    static constexpr std::string_view name = "sgd";
    static constexpr std::size_t max_state_buffers = 1; //!< momentum_buffer
    static constexpr std::size_t min_state_buffers = 0; //!< none without momentum

    //! Per-group hyperparameters; defaults are torch's (plain SGD).
    struct options {
        //! Learning rate.
        double lr = 1e-3;
        //! Momentum factor; 0 keeps no momentum buffer.
        double momentum = 0.0;
        //! Dampening of the gradient's share in the momentum buffer.
        double dampening = 0.0;
        //! L2 weight decay, added to the gradient after the mask (see masking_options::decay_masked).
        double weight_decay = 0.0;
        //! Nesterov momentum; needs momentum > 0 and dampening = 0.
        bool nesterov = false;

        //! Memberwise: lets the optimizer skip work when options did not change.
        friend bool operator==(const options&, const options&) = default;
    };

    //! Throws childtune::error naming `group` for a negative or non-finite value, or
    //! Nesterov without momentum or with dampening.
    static void validate(const options& o, std::string_view group) {
        detail::require_finite_nonnegative(o.lr, "lr", group);
        detail::require_finite_nonnegative(o.momentum, "momentum", group);
        detail::require_finite_nonnegative(o.dampening, "dampening", group);
        detail::require_finite_nonnegative(o.weight_decay, "weight_decay", group);
        if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0))
            detail::fail("group '" + std::string(group) + "': nesterov needs momentum > 0 and dampening = 0");
    }
    //! Plain SGD keeps no state; the momentum buffer appears when momentum != 0.
    static std::size_t state_buffers(const options& o) { return o.momentum != 0.0 ? 1 : 0; }

    //! Number of doubles `to_values` writes per group into state files.
    static constexpr std::size_t option_count = 5;
    //! The options as doubles in state-file order: lr, momentum, dampening,
    //! weight_decay, nesterov (0 or 1).
    static std::array<double, option_count> to_values(const options& o) {
        return {o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov ? 1.0 : 0.0};
    }
    //! The inverse of `to_values`.
    static options from_values(const std::array<double, option_count>& v) {
        return {v[0], v[1], v[2], v[3], v[4] != 0.0};
    }

    //! Per-step scalars, rounded once to the state type S.
    template <class S>
    struct step_constants {
        //! @{
        //! -lr and the hyperparameters, in S.
        S neg_lr, momentum, one_minus_dampening, weight_decay;
        //! @}
        //! @{
        //! Flags: decay (wd != 0), use_momentum, first (the buffer is fresh), nesterov.
        bool decay, use_momentum, first, nesterov;
    //! @}
    };

    //! `fresh_state`: the momentum buffer was just created and takes `d` as is.
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t /*step*/, bool fresh_state) {
        return {static_cast<S>(-o.lr), static_cast<S>(o.momentum), static_cast<S>(1.0 - o.dampening),
                static_cast<S>(o.weight_decay), o.weight_decay != 0.0, o.momentum != 0.0, fresh_state, o.nesterov};
    }

    //! One element (or one vector of lanes).
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const element_mask<K, V>& e, V& p, const V& gradient, V (&state)[2]) {
        using detail::select;
        V g = select(e.gradient_kept, e.rescaled_gradient(gradient), V(S(0)));
        if (c.decay) g = select(e.decay_kept, g + V(c.weight_decay) * p, g);
        if (c.use_momentum) {
            V& buf = state[0];
            buf = c.first ? g : buf * V(c.momentum) + V(c.one_minus_dampening) * g;
            g = c.nesterov ? g + V(c.momentum) * buf : buf;
        }
        p = select(e.update_kept, p + e.rescaled_update(V(c.neg_lr) * g), p);
    }
};

} // namespace childtune
