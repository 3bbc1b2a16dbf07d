#pragma once
//! \file
//! How a mask enters an update rule, and the per-lane masks the rules consume.

#include <childtune/config.hpp>
#include <childtune/error.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace childtune {

//! What the mask multiplies.
enum class mask_target : std::uint8_t {
    //! The gradient, before the moment updates (the reference implementation):
    //! masked entries still move through the momentum of earlier steps.
    gradient = 0,
    //! The parameter update: moments see the full gradient, only kept entries move
    //! (scaled by 1/p for Child-Tuning_F, so the expected update is unchanged).
    update = 1,
};

//! Options users of the reference ask about; defaults reproduce the reference.
struct masking_options {
    //! What the mask multiplies: the gradient (reference) or the update.
    mask_target target = mask_target::gradient;
    //! Apply weight decay to masked-out entries too (the reference decays every
    //! parameter); false decays only the kept ones.
    bool decay_masked = true;

    //! Memberwise; lets the optimizer see that masking did not change.
    friend bool operator==(const masking_options&, const masking_options&) = default;
};

//! Per-element (or per-lane) facts an update rule needs about the mask. K is
//! `bool` in scalar code and a lane mask in vector code; V the value type.
template <class K, class V>
struct element_mask {
    K gradient_kept; //!< use the gradient (else it is replaced by 0)
    K update_kept;   //!< apply the update to the parameter
    K decay_kept;    //!< apply weight decay
    V gradient_divisor; //!< kept gradients are divided by it (p, or 1)
    V update_divisor;   //!< applied updates are divided by it (p, or 1)
    //! Whether the divisions happen at all: a division by 1 is exact but costs
    //! as much as a real one, and the step is short of dividers, not of branches
    //! (these two are the same for every element of a tensor).
    bool rescale_gradient;
    //! Whether `update_divisor` is applied (the same for every element of a tensor).
    bool rescale_update;

    //! The gradient divided by `gradient_divisor` when rescale_gradient is set.
    CHILDTUNE_HD_INLINE V rescaled_gradient(const V& g) const { return rescale_gradient ? g / gradient_divisor : g; }
    //! The update divided by `update_divisor` when rescale_update is set.
    CHILDTUNE_HD_INLINE V rescaled_update(const V& u) const { return rescale_update ? u / update_divisor : u; }
};

// Lane types (K, V) cross function boundaries by const reference, here and in
// every rule: GCC notes (-Wpsabi) each function that takes a 32- or 64-byte
// vector by value in a translation unit compiled without AVX, even one that is
// always inlined, and a note is an `inform` that no pragma silences, so it would
// appear in every user's build.

namespace detail {
CHILDTUNE_HD_INLINE constexpr bool mask_or(bool a, bool b) { return a || b; }

//! What a range's element masks share: computed once per range, so the loop
//! only ORs each keep decision into three precomputed masks.
template <class K, class V>
struct mask_plan {
    K gradient_always; //!< all lanes when the mask targets the update, else none
    K update_always;   //!< all lanes when the mask targets the gradient, else none
    K decay_always;    //!< all lanes when masked entries decay too, else none
    element_mask<K, V> base;

    CHILDTUNE_HD_INLINE element_mask<K, V> operator()(const K& keep) const {
        element_mask<K, V> e = base;
        e.gradient_kept = mask_or(keep, gradient_always);
        e.update_kept = mask_or(keep, update_always);
        e.decay_kept = mask_or(keep, decay_always);
        return e;
    }
    //! The element mask of `keep` under the default options (the gradient is
    //! masked, every element decays), given K's all-true value `all` as a
    //! constant the compiler sees: the update and decay masks are then `all`, so
    //! the rule's selects on them fold away and the ORs are gone. The same
    //! masks as operator() for those options, at a third of the selects.
    CHILDTUNE_HD_INLINE element_mask<K, V> gradient_only(const K& keep, const K& all) const {
        element_mask<K, V> e = base;
        e.gradient_kept = keep;
        e.update_kept = all;
        e.decay_kept = all;
        return e;
    }
    //! The element mask where every element is kept, whatever the options.
    template <class All>
    CHILDTUNE_HD_INLINE element_mask<All, V> all_kept(All all) const {
        return {all, all, all, base.gradient_divisor, base.update_divisor, base.rescale_gradient, base.rescale_update};
    }
};

//! The plan of a range: `all`/`none` are K's all-true/all-false values;
//! `keep_probability` is p for Child-Tuning_F, else 1 (`rescales` says which);
//! only the divisor a rescaling uses is ever applied.
template <class K, class V>
CHILDTUNE_HD_INLINE mask_plan<K, V> make_mask_plan(const K& all, const K& none, masking_options m, const V& keep_probability,
                                                   bool rescales) {
    const bool on_gradient = m.target == mask_target::gradient;
    return {on_gradient ? none : all,
            on_gradient ? all : none,
            m.decay_masked ? all : none,
            {none, none, none, keep_probability, keep_probability, rescales && on_gradient, rescales && !on_gradient}};
}

//! The element mask of one keep decision (scalar code: a plan of one element).
template <class K, class V>
CHILDTUNE_HD_INLINE element_mask<K, V> make_element_mask(const K& keep, const K& all, const K& none, masking_options m,
                                                         const V& keep_probability, bool rescales) {
    return make_mask_plan(all, none, m, keep_probability, rescales)(keep);
}
} // namespace detail

namespace detail {
inline void require_finite_nonnegative(double value, std::string_view what, std::string_view group) {
    if (!std::isfinite(value) || value < 0.0)
        fail("group '" + std::string(group) + "': " + std::string(what) + " = " + format_number(value) +
             " must be finite and >= 0");
}
inline void require_beta(double value, std::string_view what, std::string_view group) {
    if (!(value >= 0.0 && value < 1.0))
        fail("group '" + std::string(group) + "': " + std::string(what) + " = " + format_number(value) +
             " must be in [0, 1)");
}
//! The hyperparameters Adam and AdamW share: lr, betas, eps, weight decay.
template <class Options>
void validate_adam_family(const Options& o, std::string_view group) {
    require_finite_nonnegative(o.lr, "lr", group);
    require_beta(o.beta1, "beta1", group);
    require_beta(o.beta2, "beta2", group);
    require_finite_nonnegative(o.eps, "eps", group);
    require_finite_nonnegative(o.weight_decay, "weight_decay", group);
}
} // namespace detail

} // namespace childtune
