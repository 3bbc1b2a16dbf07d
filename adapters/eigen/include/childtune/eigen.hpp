#pragma once
//! \file
//! Eigen adapter: any Eigen dense object that owns or refers to contiguous memory
//! (Matrix, Array, Map, Ref, a Block of whole columns, vectors, segments) becomes
//! a childtune::tensor_view of its scalar, so Eigen models train with the
//! Child-Tuning optimizer without copying parameters or gradients.
//!
//!     Eigen::MatrixXf w1(64, 32), g1(64, 32);
//!     childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.3, seed});
//!     auto enc = opt.add_group("encoder", {}, true);
//!     childtune::eigen::add_parameter(opt, enc, "w1", w1, g1);
//!
//! The core sees rank-1 views (DESIGN.md §3): every Child-Tuning step is
//! element-wise, so only the memory order of the elements matters. That is why
//! the adapter checks, at run time, that an object's elements are one gap-free
//! run (Eigen's strides decide that, not its type: a Ref or Map may carry any
//! stride) and that a parameter and its gradient lay the same element out at the
//! same position. Compile-time mistakes (an expression such as `A + B`, a const
//! parameter, mismatched scalars, a temporary Matrix) are static_asserts that say
//! what to do instead.
//!
//! Scalar types: float, double, Eigen::bfloat16 (→ childtune::bfloat16) and
//! Eigen::half (→ childtune::float16). The 16-bit types are reinterpreted in
//! place; the static_asserts below prove the layouts agree.

// The whole core, as <childtune/torch.hpp> has it: an Eigen program needs no
// other childtune include for Child-Tuning_F or _D (Fisher accumulation, top-p
// selection, mask sets, checkpoints).
#include <childtune/childtune.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace childtune::eigen {

namespace detail {

template <class Scalar>
struct scalar_map {
    static constexpr bool supported = false;
};
template <>
struct scalar_map<float> {
    static constexpr bool supported = true;
    using type = float;
};
template <>
struct scalar_map<double> {
    static constexpr bool supported = true;
    using type = double;
};
template <>
struct scalar_map<Eigen::half> {
    static constexpr bool supported = true;
    using type = childtune::float16;
};
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
template <>
struct scalar_map<Eigen::bfloat16> {
    static constexpr bool supported = true;
    using type = childtune::bfloat16;
};
#endif

//! The 16-bit scalars are viewed in place as childtune's storage types, so both
//! must be a bare 16-bit pattern with the same size and alignment.
template <class EigenType, class Ours>
inline constexpr bool same_16bit_layout = sizeof(EigenType) == sizeof(Ours) && alignof(EigenType) == alignof(Ours) &&
                                          sizeof(EigenType) == 2 && std::is_trivially_copyable_v<EigenType> &&
                                          std::is_standard_layout_v<EigenType>;
static_assert(same_16bit_layout<Eigen::half, childtune::float16>,
              "childtune::eigen: Eigen::half is no longer layout-compatible with childtune::float16");
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
static_assert(same_16bit_layout<Eigen::bfloat16, childtune::bfloat16>,
              "childtune::eigen: Eigen::bfloat16 is no longer layout-compatible with childtune::bfloat16");
#endif

template <class Derived>
std::true_type dense_test(const Eigen::DenseBase<Derived>*);
std::false_type dense_test(...);
template <class Derived>
std::true_type plain_test(const Eigen::PlainObjectBase<Derived>*);
std::false_type plain_test(...);

template <class D>
inline constexpr bool is_dense = decltype(dense_test(static_cast<D*>(nullptr)))::value;

template <class D>
struct is_const_ref : std::false_type {};
template <class T, int Options, class Stride>
struct is_const_ref<Eigen::Ref<const T, Options, Stride>> : std::true_type {};

//! Objects that own their storage, or may own it: a Ref<const T> bound to an
//! expression or to mismatching strides evaluates it into a member. Passed as
//! rvalues they die at the end of the full expression, and the optimizer keeps
//! a pointer into them.
template <class D>
inline constexpr bool may_own_storage =
    decltype(plain_test(static_cast<D*>(nullptr)))::value || is_const_ref<D>::value;

template <class D>
constexpr bool has_direct_access() {
    return (static_cast<unsigned>(D::Flags) & static_cast<unsigned>(Eigen::DirectAccessBit)) != 0;
}

template <class X>
using pointee_t = std::remove_pointer_t<decltype(std::declval<std::remove_reference_t<X>&>().data())>;

//! Checks what the type system can know about an object handed to the adapter;
//! each failure is one static_assert with advice, and later checks are skipped
//! so it is the only diagnostic.
template <class X>
constexpr bool check_object() {
    using D = std::remove_cvref_t<X>;
    if constexpr (!is_dense<D>) {
        static_assert(is_dense<D>,
                      "childtune::eigen: not an Eigen dense object (Matrix, Array, Map, Ref, Block). std::vector, "
                      "std::array and std::span go to childtune::optimizer::add_parameter directly");
        return false;
    } else if constexpr (!has_direct_access<D>()) {
        static_assert(has_direct_access<D>(),
                      "childtune::eigen: this Eigen expression has no storage of its own (e.g. A + B, 2 * A, "
                      "A.cwiseAbs(), A * B). The optimizer reads and writes memory in place: pass a Matrix, Array, "
                      "Map, Ref or Block, and evaluate expressions into a Matrix first");
        return false;
    } else if constexpr (!scalar_map<std::remove_cv_t<typename D::Scalar>>::supported) {
        static_assert(scalar_map<std::remove_cv_t<typename D::Scalar>>::supported,
                      "childtune::eigen: unsupported scalar type; parameters and gradients must be float, double, "
                      "Eigen::bfloat16 or Eigen::half");
        return false;
    } else if constexpr (!std::is_lvalue_reference_v<X> && may_own_storage<D>) {
        static_assert(std::is_lvalue_reference_v<X> || !may_own_storage<D>,
                      "childtune::eigen: a temporary Matrix or Array (or a temporary Ref<const T>, which may hold a "
                      "copy) cannot be viewed: the optimizer keeps a pointer to its memory, which is freed at the "
                      "end of the statement. Pass a named object");
        return false;
    } else {
        return true;
    }
}

//! The childtune element type of X's storage, const when X is read-only.
template <class X>
struct element_of {
    using scalar = pointee_t<X>;
    using mapped = typename scalar_map<std::remove_cv_t<scalar>>::type;
    using type = std::conditional_t<std::is_const_v<scalar>, const mapped, mapped>;
};

//! Joins message pieces by appending; `"literal" + std::string&&` trips g++ 12's
//! -Wrestrict false positive (GCC PR 105651) in users' optimised builds.
inline std::string concat(std::initializer_list<std::string_view> parts) {
    std::string s;
    for (const auto part : parts) s.append(part);
    return s;
}

//! Empty when x's coefficients are one gap-free run of x.size() elements in
//! memory order, otherwise why not. Strides are run-time properties of Map and
//! Ref, so no type can answer this.
template <class Derived>
std::string contiguity_problem(const Eigen::DenseBase<Derived>& base) {
    const Derived& x = base.derived();
    if (x.size() == 0) return {};
    const auto inner = static_cast<long long>(x.innerSize());
    const auto outer = static_cast<long long>(x.outerSize());
    const auto inner_stride = static_cast<long long>(x.innerStride());
    const auto outer_stride = static_cast<long long>(x.outerStride());
    const char* inner_word = Derived::IsRowMajor ? "row" : "column";
    if (inner > 1 && inner_stride != 1)
        return concat({"inner stride is ", std::to_string(inner_stride), ", not 1: neighbouring elements of a ",
                       inner_word,
                       " are not adjacent in memory (a row of a column-major matrix, a diagonal, or a Map/Ref with "
                       "an InnerStride)"});
    if (outer > 1 && outer_stride != inner)
        return concat({"outer stride is ", std::to_string(outer_stride), " but each ", inner_word, " holds ",
                       std::to_string(inner), " elements, so there are gaps between ", inner_word,
                       "s (a block that does not span whole ", inner_word, "s, or a Map/Ref with an OuterStride)"});
    return {};
}

template <class X>
auto make_view(X& x, std::string_view what) {
    using E = typename element_of<X>::type;
    if (auto problem = contiguity_problem(x); !problem.empty())
        childtune::detail::fail(concat({what, " is not contiguous: ", problem}));
    return tensor_view<E>(reinterpret_cast<E*>(x.data()), static_cast<std::size_t>(x.size()));
}

template <class Derived>
bool is_vector_shaped(const Eigen::DenseBase<Derived>& x) {
    return x.rows() <= 1 || x.cols() <= 1;
}

template <class Derived>
std::string shape_string(const Eigen::DenseBase<Derived>& x) {
    return concat({std::to_string(x.rows()), "x", std::to_string(x.cols()),
                   Derived::IsRowMajor ? " row-major" : " column-major"});
}

//! A parameter and its gradient are paired element by element in memory order,
//! so two matrices must agree in shape and storage order: a transposed or
//! differently ordered gradient of the same size would silently update w(i, j)
//! with the gradient of w(j, i). A vector on either side is a flat buffer in
//! memory order and pairs with anything of the same size.
template <class P, class G>
void check_pairing(const Eigen::DenseBase<P>& param, const Eigen::DenseBase<G>& grad, const std::string& where) {
    if (param.size() != grad.size())
        childtune::detail::fail(concat({where, ": gradient has ", std::to_string(grad.size()),
                                        " elements, parameter has ", std::to_string(param.size())}));
    if (is_vector_shaped(param) || is_vector_shaped(grad)) return;
    if (param.rows() != grad.rows() || param.cols() != grad.cols() ||
        static_cast<bool>(P::IsRowMajor) != static_cast<bool>(G::IsRowMajor))
        childtune::detail::fail(concat({where, ": gradient is ", shape_string(grad), ", parameter is ",
                                        shape_string(param),
                                        "; elements are paired in memory order, so shape and storage order must "
                                        "agree"}));
}

template <class P, class G>
constexpr bool check_pair() {
    using PD = std::remove_cvref_t<P>;
    using GD = std::remove_cvref_t<G>;
    if constexpr (!check_object<P>() || !check_object<G>()) {
        return false;
    } else if constexpr (std::is_const_v<pointee_t<P>>) {
        static_assert(!std::is_const_v<pointee_t<P>>,
                      "childtune::eigen: the parameter is read-only (a const object, a Map/Ref of const scalars, or "
                      "a Block of one). The optimizer updates parameters in place: pass a writable Matrix, Array, "
                      "Map, Ref or Block");
        return false;
    } else if constexpr (!std::is_same_v<std::remove_cv_t<typename PD::Scalar>,
                                         std::remove_cv_t<typename GD::Scalar>>) {
        static_assert(std::is_same_v<std::remove_cv_t<typename PD::Scalar>, std::remove_cv_t<typename GD::Scalar>>,
                      "childtune::eigen: a parameter and its gradient must have the same scalar type (both float, "
                      "both double, ...); keep the gradient in the parameter's scalar type");
        return false;
    } else {
        return true;
    }
}

} // namespace detail

//! The childtune element type an Eigen scalar is stored as (float, double,
//! childtune::bfloat16 for Eigen::bfloat16, childtune::float16 for Eigen::half).
template <class Scalar>
    requires detail::scalar_map<Scalar>::supported
using element_t = typename detail::scalar_map<Scalar>::type;

//! True for Eigen dense types whose coefficients live in memory (Eigen's
//! DirectAccessBit): the candidates for a view. Contiguity is checked at run time.
template <class X>
inline constexpr bool has_storage = [] {
    using D = std::remove_cvref_t<X>;
    if constexpr (detail::is_dense<D>) return detail::has_direct_access<D>();
    else return false;
}();

//! Whether x's elements form one gap-free run of x.size() elements.
template <class Derived>
bool is_contiguous(const Eigen::DenseBase<Derived>& x) {
    if constexpr (!detail::check_object<const Derived&>()) return false;
    else return detail::contiguity_problem(x).empty();
}

//! A rank-1 view of x's memory in memory order: tensor_view<T> for writable
//! objects, tensor_view<const T> for read-only ones. Throws childtune::error
//! naming `name` when the memory has gaps or strides. The view aliases x: it is
//! valid while x is alive and not resized.
template <class X>
auto view(X&& x, std::string_view name = "(unnamed)") {
    if constexpr (!detail::check_object<X>()) {
        return tensor_view<float>{};
    } else {
        return detail::make_view(x, detail::concat({"tensor '", name, "'"}));
    }
}

//! As view(), always read-only (gradients; Fisher accumulation).
template <class X>
auto const_view(X&& x, std::string_view name = "(unnamed)") {
    if constexpr (!detail::check_object<X>()) {
        return tensor_view<const float>{};
    } else {
        using E = std::remove_const_t<typename detail::element_of<X>::type>;
        return tensor_view<const E>(detail::make_view(x, detail::concat({"tensor '", name, "'"})));
    }
}

//! Registers an Eigen parameter and its gradient with `opt` (see
//! childtune::optimizer::add_parameter): `param` must be writable and stay where
//! it is, `grad` may be const. Both are checked for contiguity, equal size, and,
//! when both are matrices, equal shape and storage order; errors name the group
//! and tensor.
template <update_rule Rule, class P, class G>
void add_parameter(optimizer<Rule>& opt, std::size_t group, std::string name, P&& param, G&& grad,
                   std::optional<std::uint32_t> key = std::nullopt) {
    if constexpr (detail::check_pair<P, G>()) {
        const std::string where = detail::concat({"group '", opt.group_name(group), "', tensor '", name, "'"});
        detail::check_pairing(param, grad, where);
        auto p = detail::make_view(param, detail::concat({where, ": parameter"}));
        auto g = detail::make_view(grad, detail::concat({where, ": gradient"}));
        using E = typename decltype(p)::value_type;
        opt.template add_parameter<E>(group, std::move(name), p, tensor_view<const E>(g), key);
    }
}

//! Points the registered tensor `name` at new Eigen memory of the same size and
//! scalar (see childtune::optimizer::rebind); the optimizer state is kept.
template <update_rule Rule, class P, class G>
void rebind(optimizer<Rule>& opt, std::string_view name, P&& param, G&& grad) {
    if constexpr (detail::check_pair<P, G>()) {
        const std::string where = detail::concat({"tensor '", name, "'"});
        detail::check_pairing(param, grad, where);
        auto p = detail::make_view(param, detail::concat({where, ": parameter"}));
        auto g = detail::make_view(grad, detail::concat({where, ": gradient"}));
        using E = typename decltype(p)::value_type;
        opt.template rebind<E>(name, p, tensor_view<const E>(g));
    }
}

//! A bit_mask from an Eigen object or expression of 0/1 values (bool, integer,
//! float, double, Eigen::half, Eigen::bfloat16 scalars; e.g. `(scores.array() > t)`):
//! element i is element i of its memory order, which is how a parameter of the
//! same storage order is registered (column-major unless RowMajor). Expressions
//! are evaluated first (one copy). A value other than 0 or 1 throws
//! childtune::error naming `name`, the element and the value.
template <class Derived>
bit_mask mask_from(std::string_view name, const Eigen::DenseBase<Derived>& x) {
    using Scalar = typename Derived::Scalar;
    const typename Derived::PlainObject plain = x.derived();
    const auto n = static_cast<std::size_t>(plain.size());
    if constexpr (!std::is_arithmetic_v<Scalar> && detail::scalar_map<Scalar>::supported) { // Eigen::half, Eigen::bfloat16
        using T = typename detail::scalar_map<Scalar>::type;
        return mask_from_values(name, std::span<const T>(reinterpret_cast<const T*>(plain.data()), n));
    } else {
        static_assert(mask_value<Scalar>, "childtune::eigen::mask_from: the scalar must be bool, an integer or floating point");
        return mask_from_values(name, std::span<const Scalar>(plain.data(), n));
    }
}

} // namespace childtune::eigen
