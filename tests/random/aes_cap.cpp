// The cap on mask definition 4's AES instructions (random/detail/aes_cap.hpp).
// ctest also runs the "[environment]" case of this program under
// CHILDTUNE_MAX_AES=software, =aesni, =VAES and =sse (tests/CMakeLists.txt), so
// the variable is checked as a process reads it, not only through the pure
// chooser; and the optimizer-level suites run again under the first two.
#include <childtune/optimizer.hpp>
#include <childtune/random/detail/aes_cap.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#if CHILDTUNE_HAS_SSE2
#include <childtune/random/detail/ars_x86.hpp>
#endif

using childtune::detail::aes_path;
using childtune::detail::aes_path_name;
using childtune::detail::choose_aes_path;
using childtune::detail::parse_aes_cap;
using childtune::detail::read_aes_cap;

TEST_CASE("aes cap: names parse in any case, and name what they parse", "[random][aes_cap]") {
    for (const aes_path path : {aes_path::software, aes_path::aesni, aes_path::vaes})
        CHECK(parse_aes_cap("x", aes_path_name(path)) == path);
    CHECK(parse_aes_cap("x", "AESNI") == aes_path::aesni);
    CHECK(parse_aes_cap("x", "Vaes") == aes_path::vaes);
    CHECK(aes_path_name(aes_path::software) == "software");
}

TEST_CASE("bad input: an AES path that is not one names the setting and the text", "[random][aes_cap][bad_input]") {
    for (std::string bad : {"", "automatic", "aes", "aes-ni", " vaes", "vaes ", "1", "avx2", "sse"})
        CHECK_THROWS_WITH(parse_aes_cap("CHILDTUNE_MAX_AES", bad),
                          "childtune: CHILDTUNE_MAX_AES = '" + bad + "' is not an AES path: use software, aesni or vaes");
    // The environment's reading never throws: the generators run on OpenMP threads.
    const auto r = read_aes_cap("avx2");
    CHECK(r.cap == aes_path::vaes);
    CHECK(r.error == "childtune: CHILDTUNE_MAX_AES = 'avx2' is not an AES path: use software, aesni or vaes");
    CHECK(read_aes_cap(nullptr).error.empty());
    CHECK(read_aes_cap(nullptr).cap == aes_path::vaes);
    CHECK(read_aes_cap("").cap == aes_path::vaes);
    CHECK(read_aes_cap("AesNi").cap == aes_path::aesni);
    CHECK(read_aes_cap("AesNi").error.empty());
}

TEST_CASE("aes cap: automatic is the best path the CPU and the pass have, at most the cap", "[random][aes_cap]") {
    constexpr aes_path a = aes_path::automatic, sw = aes_path::software, ni = aes_path::aesni, v = aes_path::vaes;
    struct row {
        bool wide, has_aesni, has_vaes;
        aes_path cap, expected;
    };
    // Every CPU: none, AES-NI only, both; wide (AVX2/AVX-512 passes) or not (SSE2).
    const row rows[] = {
        {true, true, true, v, v},    {true, true, true, ni, ni},  {true, true, true, sw, sw},
        {false, true, true, v, ni},  {false, true, true, ni, ni}, {false, true, true, sw, sw},
        {true, true, false, v, ni},  {true, true, false, ni, ni}, {true, true, false, sw, sw},
        {false, true, false, v, ni}, {true, false, false, v, sw}, {true, false, false, ni, sw},
        {false, false, false, v, sw},
    };
    for (const row& r : rows) {
        INFO("wide " << r.wide << ", aes-ni " << r.has_aesni << ", vaes " << r.has_vaes << ", cap "
                     << aes_path_name(r.cap));
        CHECK(choose_aes_path(a, r.wide, r.cap, r.has_aesni, r.has_vaes) == r.expected);
        // A path asked for by name is taken as it is (tests force paths the cap would not pick).
        for (const aes_path forced : {sw, ni, v}) CHECK(choose_aes_path(forced, r.wide, r.cap, r.has_aesni, r.has_vaes) == forced);
    }
    STATIC_REQUIRE(choose_aes_path(a, true, v, true, true) == v); // a constant expression
}

// Run by ctest with CHILDTUNE_MAX_AES unset (the discovered case) and set to
// software, aesni, VAES and sse (entries aes_cap/...).
TEST_CASE("aes cap: this process follows CHILDTUNE_MAX_AES, and a bad one fails the optimizer's constructor",
          "[random][aes_cap][environment]") {
    const char* const environment = std::getenv("CHILDTUNE_MAX_AES");
    const auto r = read_aes_cap(environment);
    const auto make_optimizer = [] { return childtune::optimizer<childtune::adamw>(childtune::bernoulli{0.5, 1}); };
    if (!r.error.empty()) {
        const std::string message = std::string("CHILDTUNE_MAX_AES = '") + environment + "' is not an AES path";
        CHECK_THROWS_WITH(make_optimizer(), Catch::Contains(message));
        CHECK_THROWS_WITH(make_optimizer(), Catch::Contains(message)); // every time, not only the first
        CHECK_THROWS_WITH(childtune::detail::check_aes_cap(), Catch::Contains(message));
    }
    CHECK(childtune::detail::environment_aes_cap().cap == r.cap); // malformed: no cap for the generators
#if CHILDTUNE_HAS_SSE2
    const bool has_aesni = childtune::detail::cpu_has_aesni();
#if CHILDTUNE_HAS_AVX2_DISPATCH
    const bool has_vaes = childtune::detail::cpu_has_vaes();
#else
    const bool has_vaes = false;
#endif
    for (const bool wide : {false, true}) {
        const aes_path resolved = childtune::detail::resolve_aes_path(aes_path::automatic, wide);
        CHECK(resolved == choose_aes_path(aes_path::automatic, wide, r.cap, has_aesni, has_vaes));
        CHECK(resolved <= r.cap);
    }
    // The views an optimizer's policy makes carry the capped path.
    const auto view = childtune::bernoulli{0.5, 1}.view(childtune::stable_tensor_key("w"), 0);
    CHECK(view.keep_params().aes == choose_aes_path(aes_path::automatic, true, r.cap, has_aesni, has_vaes));
#endif
    if (!r.error.empty()) return;
    // A Child-Tuning_F step on the capped path keeps what the scalar definition
    // keeps: kept elements move, the others stay (no weight decay). 4096
    // elements: whole super-groups and a ragged end on every kernel.
    auto opt = make_optimizer();
    std::vector<float> w(4096 + 77, 0.5f), g(w.size(), 0.25f);
    const auto group = opt.add_group("encoder", {.lr = 0.1, .weight_decay = 0.0});
    opt.add_parameter(group, "w", w, g);
    opt.step();
    const auto keep = childtune::bernoulli{0.5, 1}.view(childtune::stable_tensor_key("w"), 0); // the first step is 0
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < w.size(); ++i) wrong += (w[i] != 0.5f) != keep.keep(i) ? 1 : 0;
    CHECK(wrong == 0);
}
