// Compile-only conformance of the public concepts: this file has no test cases;
// building it is the test.
#include <childtune/childtune.hpp>

#include <array>
#include <list>
#include <span>
#include <vector>

namespace ct = childtune;

static_assert(ct::parameter_element<float> && ct::parameter_element<double>);
static_assert(ct::parameter_element<ct::bfloat16> && ct::parameter_element<ct::float16>);
static_assert(!ct::parameter_element<int> && !ct::parameter_element<long double> && !ct::parameter_element<const float>);

static_assert(ct::state_element<float> && ct::state_element<double>);
static_assert(!ct::state_element<ct::bfloat16> && !ct::state_element<ct::float16>);

static_assert(ct::contiguous_tensor<std::vector<float>>);
static_assert(ct::contiguous_tensor<const std::vector<double>&>);
static_assert(ct::contiguous_tensor<std::array<ct::bfloat16, 4>>);
static_assert(ct::contiguous_tensor<std::span<ct::float16>>);
static_assert(ct::contiguous_tensor<ct::tensor_view<const float>>);
static_assert(!ct::contiguous_tensor<std::list<float>>);   // not contiguous
static_assert(!ct::contiguous_tensor<std::vector<int>>);   // not a parameter element
static_assert(!ct::contiguous_tensor<float*>);

static_assert(ct::gradient_mask_view<ct::dense_view>);
static_assert(ct::gradient_mask_view<ct::bernoulli_view>);
static_assert(ct::gradient_mask_view<ct::fixed_view>);
static_assert(!ct::gradient_mask_view<ct::bit_mask>);
static_assert(ct::dense_view::is_dense && !ct::bernoulli_view::is_dense && !ct::fixed_view::is_dense);

static_assert(ct::gradient_mask<ct::dense>);
static_assert(ct::gradient_mask<ct::bernoulli>);
static_assert(ct::gradient_mask<ct::fixed>);
static_assert(!ct::gradient_mask<ct::mask_set>);

static_assert(ct::mask_view<ct::dense_view> && ct::mask_view<ct::bernoulli_view> && ct::mask_view<ct::fixed_view>);
static_assert(ct::mask_view<ct::any_mask_view> && ct::mask_view<ct::custom_mask_view>);
static_assert(ct::mask_policy<ct::dense> && ct::mask_policy<ct::bernoulli> && ct::mask_policy<ct::fixed>);
static_assert(ct::mask_policy<ct::any_mask>);
static_assert(!ct::mask_policy<ct::mask_set> && !ct::mask_policy<ct::mask_mode> && !ct::mask_policy<int>);

static_assert(ct::update_rule<ct::adamw>);
static_assert(ct::update_rule<ct::adam>);
static_assert(ct::update_rule<ct::sgd>);
static_assert(ct::update_rule<ct::lion>);
static_assert(ct::update_rule<ct::lamb>);
static_assert(ct::detail::rule_reduction_count<ct::lamb>() == 2 && ct::detail::rule_reduction_count<ct::adamw>() == 0);
static_assert(!ct::update_rule<int>);
static_assert(!ct::update_rule<ct::bernoulli>);

namespace conformance {
// A rule with everything but apply() is not an update rule.
struct no_apply {
    static constexpr std::string_view name = "no_apply";
    static constexpr std::size_t max_state_buffers = 0;
    static constexpr std::size_t option_count = 1;
    struct options {
        double lr = 0;
        friend bool operator==(const options&, const options&) = default;
    };
    static void validate(const options&, std::string_view) {}
    static std::size_t state_buffers(const options&) { return 0; }
    static std::array<double, 1> to_values(const options& o) { return {o.lr}; }
    static options from_values(const std::array<double, 1>& v) { return {v[0]}; }
    template <class S>
    struct step_constants {};
    template <class S>
    static step_constants<S> prepare(const options&, std::uint64_t, bool) { return {}; }
};
// A rule that declares a per-tensor phase but has no reduce()/finish().
struct phase_without_reduce {
    static constexpr std::string_view name = "phase_without_reduce";
    static constexpr std::size_t max_state_buffers = 0;
    static constexpr std::size_t reduction_count = 1;
    static constexpr std::size_t option_count = 1;
    struct options {
        double lr = 0;
        friend bool operator==(const options&, const options&) = default;
    };
    static void validate(const options&, std::string_view) {}
    static std::size_t state_buffers(const options&) { return 0; }
    static std::array<double, 1> to_values(const options& o) { return {o.lr}; }
    static options from_values(const std::array<double, 1>& v) { return {v[0]}; }
    template <class S>
    struct step_constants {};
    template <class S>
    static step_constants<S> prepare(const options&, std::uint64_t, bool) { return {}; }
    template <class V, class K, class S>
    static void apply(const step_constants<S>&, const ct::element_mask<K, V>&, V&, V, V (&)[2]) {}
};
// A policy whose view is not a mask view.
struct view_of_int {
    void validate() const {}
    int view(const ct::tensor_info&, std::uint64_t) const { return 0; }
};
} // namespace conformance
static_assert(!ct::update_rule<conformance::no_apply>);
static_assert(!ct::update_rule<conformance::phase_without_reduce>);
static_assert(!ct::mask_policy<conformance::view_of_int>);

static_assert(ct::execution_backend<ct::serial_backend>);
static_assert(ct::execution_backend<ct::openmp_backend>);
static_assert(!ct::execution_backend<int>);

static_assert(sizeof(ct::bfloat16) == 2 && std::is_trivially_copyable_v<ct::bfloat16>);
static_assert(sizeof(ct::float16) == 2 && std::is_trivially_copyable_v<ct::float16>);
static_assert(ct::dtype_of<float> == ct::dtype::float32 && ct::dtype_of<ct::float16> == ct::dtype::float16);
