#include <childtune/exec/nonfinite.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

using childtune::bfloat16;
using childtune::float16;
using childtune::detail::all_finite;

TEMPLATE_TEST_CASE("all_finite finds NaN and Inf anywhere and nothing else", "[exec][nonfinite]", float, double,
                   bfloat16, float16) {
    using T = TestType;
    const auto make = [](float x) {
        if constexpr (sizeof(T) == 2) return T(x);
        else return static_cast<T>(x);
    };
    for (std::size_t n : {1u, 7u, 32u, 100u, 1000u}) {
        std::vector<T> v(n, make(1.5f));
        v[0] = make(-0.0f);
        if (n > 3) v[3] = make(std::numeric_limits<float>::denorm_min());
        if (n > 5 && sizeof(T) >= 4) v[5] = make(std::numeric_limits<float>::max());
        REQUIRE(all_finite(v.data(), n));
        for (std::size_t at : {std::size_t{0}, n / 2, n - 1})
            for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()}) {
                auto w = v;
                w[at] = make(bad);
                INFO("n " << n << " at " << at << " value " << bad);
                REQUIRE_FALSE(all_finite(w.data(), n));
            }
    }
    CHECK(all_finite(static_cast<const T*>(nullptr), 0));
}
