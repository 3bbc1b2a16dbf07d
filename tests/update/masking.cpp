// mask_plan (update/masking.hpp): gradient_only, the element mask the wide
// kernels use under the default masking options, equals the run-time plan's.

#include <childtune/exec/detail/simd.hpp>
#include <childtune/update/masking.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>

using childtune::mask_target;
using childtune::masking_options;
using childtune::detail::make_mask_plan;

namespace {
template <class K, class V>
void require_same(const childtune::element_mask<K, V>& a, const childtune::element_mask<K, V>& b) {
    REQUIRE(std::memcmp(&a.gradient_kept, &b.gradient_kept, sizeof(K)) == 0);
    REQUIRE(std::memcmp(&a.update_kept, &b.update_kept, sizeof(K)) == 0);
    REQUIRE(std::memcmp(&a.decay_kept, &b.decay_kept, sizeof(K)) == 0);
    REQUIRE(std::memcmp(&a.gradient_divisor, &b.gradient_divisor, sizeof(V)) == 0);
    REQUIRE(std::memcmp(&a.update_divisor, &b.update_divisor, sizeof(V)) == 0);
    REQUIRE(a.rescale_gradient == b.rescale_gradient);
    REQUIRE(a.rescale_update == b.rescale_update);
}
} // namespace

TEST_CASE("mask_plan::gradient_only equals the plan's element mask under the default options", "[update][masking]") {
    for (const bool rescales : {false, true}) {
        CAPTURE(rescales);
        const auto plan = make_mask_plan(true, false, masking_options{}, 0.3f, rescales);
        for (const bool keep : {false, true}) {
            CAPTURE(keep);
            require_same(plan.gradient_only(keep, true), plan(keep));
        }
    }
#if CHILDTUNE_HAS_SSE2
    using V = childtune::detail::simd<float, 4>;
    const auto lanes = [](std::uint64_t bits) { return lane_mask(static_cast<V*>(nullptr), bits); };
    const auto plan = make_mask_plan(lanes(~std::uint64_t{0}), lanes(0), masking_options{}, V(0.3f), true);
    for (std::uint64_t bits = 0; bits < 16; ++bits) {
        CAPTURE(bits);
        require_same(plan.gradient_only(lanes(bits), lanes(~std::uint64_t{0})), plan(lanes(bits)));
    }
#endif
}

TEST_CASE("mask_plan::gradient_only holds only for the default options", "[update][masking]") {
    // Why the kernels check `masking == masking_options{}` before using it: under
    // the other options a dropped element is not updated or not decayed.
    for (const masking_options m : {masking_options{mask_target::update, true}, masking_options{mask_target::gradient, false}}) {
        CAPTURE(static_cast<int>(m.target), m.decay_masked);
        const auto plan = make_mask_plan(true, false, m, 0.3f, true);
        const auto folded = plan.gradient_only(false, true);
        const auto planned = plan(false);
        REQUIRE((folded.update_kept != planned.update_kept || folded.decay_kept != planned.decay_kept ||
                 folded.gradient_kept != planned.gradient_kept));
    }
}
