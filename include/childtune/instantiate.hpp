#pragma once
//! \file
//! Paying an optimizer's compile time once per program instead of once per
//! translation unit (explicit instantiation of the common templates).
//!
//! A translation unit that uses `childtune::optimizer<Rule>` compiles the
//! optimizer's bookkeeping for Rule and the rule's step kernels (every
//! parameter type, state precision and instruction set). A program with many
//! such units can compile them in one and declare them in the others:
//!
//!     // in one .cpp of the program
//!     #include <childtune/childtune.hpp>
//!     #include <childtune/instantiate.hpp>
//!     CHILDTUNE_INSTANTIATE_OPTIMIZER(childtune::adamw)
//!
//!     // in every other unit (e.g. in a header they all include)
//!     #include <childtune/childtune.hpp>
//!     #include <childtune/instantiate.hpp>
//!     CHILDTUNE_EXTERN_OPTIMIZER(childtune::adamw)
//!
//! The code is the same either way, so results are bit-identical. A program
//! that declares them extern and instantiates them nowhere fails to link; it
//! never runs without them. Works for the user's own rules. The LibTorch
//! adapter's CPU path runs the same kernels: its units can declare just those
//! with CHILDTUNE_EXTERN_CPU_KERNELS (and one unit CHILDTUNE_INSTANTIATE_CPU_KERNELS).
//! docs/compile-time.md has the figures, and a precompiled header (CMake's
//! `target_precompile_headers`) for the parsing part.

#include <childtune/numeric/half.hpp>
#include <childtune/optimizer.hpp>

//! \cond INTERNAL
#define CHILDTUNE_DETAIL_CPU_KERNELS_OF(prefix, P, ...)                                                           \
    prefix template const ::childtune::detail::cpu_kernel_table<__VA_ARGS__>&                                     \
    ::childtune::detail::cpu_kernels<__VA_ARGS__, P>();
#define CHILDTUNE_DETAIL_CPU_KERNELS(prefix, ...)                                                                 \
    CHILDTUNE_DETAIL_CPU_KERNELS_OF(prefix, float, __VA_ARGS__)                                                   \
    CHILDTUNE_DETAIL_CPU_KERNELS_OF(prefix, double, __VA_ARGS__)                                                  \
    CHILDTUNE_DETAIL_CPU_KERNELS_OF(prefix, ::childtune::bfloat16, __VA_ARGS__)                                   \
    CHILDTUNE_DETAIL_CPU_KERNELS_OF(prefix, ::childtune::float16, __VA_ARGS__)
#define CHILDTUNE_DETAIL_OPTIMIZER(prefix, ...)                                                                   \
    CHILDTUNE_DETAIL_CPU_KERNELS(prefix, __VA_ARGS__)                                                             \
    prefix template class ::childtune::detail::registry<__VA_ARGS__>;                                             \
    prefix template class ::childtune::basic_optimizer<__VA_ARGS__, ::childtune::detail::cpu_executor<__VA_ARGS__>>; \
    prefix template class ::childtune::optimizer<__VA_ARGS__>;                                                   \
    prefix template class ::childtune::detail::cpu_executor<__VA_ARGS__>;                                         \
    prefix template auto ::childtune::optimizer<__VA_ARGS__>::step<::childtune::default_backend>(                  \
        const ::childtune::default_backend&) -> ::childtune::step_result;                                       \
    prefix template auto ::childtune::optimizer<__VA_ARGS__>::first_nonfinite_gradient<::childtune::default_backend>( \
        const ::childtune::default_backend&) const -> std::optional<std::size_t>;
//! \endcond

//! Declares the CPU step kernels of the rule (every parameter type) as compiled
//! in another unit. At namespace scope.
#define CHILDTUNE_EXTERN_CPU_KERNELS(...) CHILDTUNE_DETAIL_CPU_KERNELS(extern, __VA_ARGS__)
//! Compiles the CPU step kernels of the rule (every parameter type) here. At
//! namespace scope, once per program.
#define CHILDTUNE_INSTANTIATE_CPU_KERNELS(...) CHILDTUNE_DETAIL_CPU_KERNELS(, __VA_ARGS__)
//! Declares `childtune::optimizer<Rule>` (its registry, bookkeeping and step
//! kernels) as compiled in another unit. At namespace scope.
#define CHILDTUNE_EXTERN_OPTIMIZER(...) CHILDTUNE_DETAIL_OPTIMIZER(extern, __VA_ARGS__)
//! Compiles `childtune::optimizer<Rule>` here. At namespace scope, once per program.
#define CHILDTUNE_INSTANTIATE_OPTIMIZER(...) CHILDTUNE_DETAIL_OPTIMIZER(, __VA_ARGS__)
