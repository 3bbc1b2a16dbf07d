#pragma once
//! \file
//! Tensors as the lanes of an update rule: with V = aten_value and K = aten_keep,
//! a rule's `apply` and `reduce` (update/*.hpp, or the user's) run as a
//! composition of ATen operations on whole tensors, on any device. This is the
//! ATen executor's kernel, generated from the rule's one definition: no rule is
//! written again for ATen.
//!
//! Every operation is one IEEE operation per element, as in the scalar
//! definition, so the results are the fused kernels' bit for bit (no operation
//! is fused with another). Constants a rule broadcasts (`V(c.beta1)`) stay
//! scalars, so `m * V(beta1)` is one ATen operation. A division by a constant
//! divides by a tensor of one element on the operand's device: ATen computes a
//! division by a CPU scalar as a multiplication by its reciprocal on CUDA, which
//! rounds differently.

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

namespace childtune::torch::detail {

//! A tensor of the state type, or a constant of it.
struct aten_value {
    at::Tensor t;             //!< defined: a tensor
    double s = 0.0;           //!< else: a constant (a value of the state type)
    at::ScalarType type = at::kFloat;

    aten_value() = default;
    aten_value(float x) : s(x), type(at::kFloat) {}   // NOLINT(google-explicit-constructor): V(S(...)) in rules
    aten_value(double x) : s(x), type(at::kDouble) {} // NOLINT(google-explicit-constructor)
    explicit aten_value(at::Tensor x) : t(std::move(x)), type(t.scalar_type()) {}

    bool constant() const { return !t.defined(); }
    //! The constant as a one-element tensor next to `like`.
    at::Tensor on(const at::Tensor& like) const { return at::full({}, s, like.options().dtype(type)); }
};

//! A lane mask: a bool tensor, or every / no element.
struct aten_keep {
    at::Tensor t;
    int constant = -1; //!< 1: every element, 0: none, -1: the tensor

    aten_keep() = default;
    aten_keep(bool all) : constant(all ? 1 : 0) {} // NOLINT(google-explicit-constructor)
    explicit aten_keep(at::Tensor x) : t(std::move(x)) {}
};

inline aten_value operator+(const aten_value& a, const aten_value& b) {
    if (a.constant() && b.constant()) return a.type == at::kDouble ? aten_value(a.s + b.s) : aten_value(float(a.s) + float(b.s));
    if (a.constant()) return aten_value(at::add(b.t, a.s));
    if (b.constant()) return aten_value(at::add(a.t, b.s));
    return aten_value(at::add(a.t, b.t));
}
inline aten_value operator-(const aten_value& a, const aten_value& b) {
    if (a.constant() && b.constant()) return a.type == at::kDouble ? aten_value(a.s - b.s) : aten_value(float(a.s) - float(b.s));
    if (a.constant()) return aten_value(at::sub(a.on(b.t), b.t));
    if (b.constant()) return aten_value(at::sub(a.t, b.s));
    return aten_value(at::sub(a.t, b.t));
}
inline aten_value operator*(const aten_value& a, const aten_value& b) {
    if (a.constant() && b.constant()) return a.type == at::kDouble ? aten_value(a.s * b.s) : aten_value(float(a.s) * float(b.s));
    if (a.constant()) return aten_value(at::mul(b.t, a.s));
    if (b.constant()) return aten_value(at::mul(a.t, b.s));
    return aten_value(at::mul(a.t, b.t));
}
inline aten_value operator/(const aten_value& a, const aten_value& b) {
    if (a.constant() && b.constant()) return a.type == at::kDouble ? aten_value(a.s / b.s) : aten_value(float(a.s) / float(b.s));
    if (a.constant()) return aten_value(at::div(a.on(b.t), b.t));
    if (b.constant()) return aten_value(at::div(a.t, b.on(a.t)));
    return aten_value(at::div(a.t, b.t));
}
inline aten_keep operator<(const aten_value& a, const aten_value& b) {
    if (a.constant()) return aten_keep(at::gt(b.t, a.s));
    return aten_keep(b.constant() ? at::lt(a.t, b.s) : at::lt(a.t, b.t));
}
inline aten_keep operator>(const aten_value& a, const aten_value& b) { return b < a; }

inline aten_value select(const aten_keep& k, const aten_value& a, const aten_value& b) {
    if (k.constant == 1) return a;
    if (k.constant == 0) return b;
    return aten_value(at::where(k.t, a.constant() ? a.on(k.t) : a.t, b.constant() ? b.on(k.t) : b.t));
}
inline aten_keep mask_or(const aten_keep& a, const aten_keep& b) {
    if (a.constant == 1 || b.constant == 1) return true;
    if (a.constant == 0) return b;
    if (b.constant == 0) return a;
    return aten_keep(at::logical_or(a.t, b.t));
}
inline aten_value vsqrt(const aten_value& x) {
    if (x.constant()) return x.type == at::kDouble ? aten_value(std::sqrt(x.s)) : aten_value(std::sqrt(float(x.s)));
    return aten_value(at::sqrt(x.t));
}

} // namespace childtune::torch::detail
