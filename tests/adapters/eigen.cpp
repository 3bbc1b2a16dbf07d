#include <childtune/eigen.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/error_matcher.hpp"

namespace ce = childtune::eigen;

namespace {

template <class T>
using row_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

//! Fills x with 0, 1, 2, ... in memory order.
template <class X>
void iota_memory(X& x) {
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<typename X::Scalar>(i);
}

//! The view aliases x: same pointer, same size, and a write through the view is
//! seen by x at the same memory position.
template <class X>
void check_aliases(X&& x) {
    auto v = ce::view(x, "x");
    REQUIRE(static_cast<const void*>(v.data()) == static_cast<const void*>(x.data()));
    REQUIRE(v.size() == static_cast<std::size_t>(x.size()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<typename decltype(v)::value_type>(100 + i);
    for (Eigen::Index i = 0; i < x.size(); ++i) REQUIRE(x.data()[i] == static_cast<double>(100 + i));
}

} // namespace

TEST_CASE("Eigen scalars map to childtune element types", "[eigen][types]") {
    STATIC_REQUIRE(std::is_same_v<ce::element_t<float>, float>);
    STATIC_REQUIRE(std::is_same_v<ce::element_t<double>, double>);
    STATIC_REQUIRE(std::is_same_v<ce::element_t<Eigen::half>, childtune::float16>);
    STATIC_REQUIRE(std::is_same_v<ce::element_t<Eigen::bfloat16>, childtune::bfloat16>);

    Eigen::MatrixXf m(2, 2);
    const Eigen::MatrixXf& cm = m;
    Eigen::Map<const Eigen::MatrixXf> const_map(m.data(), 2, 2);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::view(m)), childtune::tensor_view<float>>);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::view(cm)), childtune::tensor_view<const float>>);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::view(const_map)), childtune::tensor_view<const float>>);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::view(m.col(0))), childtune::tensor_view<float>>);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::view(cm.col(0))), childtune::tensor_view<const float>>);
    STATIC_REQUIRE(std::is_same_v<decltype(ce::const_view(m)), childtune::tensor_view<const float>>);

    STATIC_REQUIRE(ce::has_storage<Eigen::MatrixXf&>);
    STATIC_REQUIRE(ce::has_storage<Eigen::Ref<Eigen::VectorXd>>);
    STATIC_REQUIRE(ce::has_storage<decltype(m.middleCols(0, 1))>);
    STATIC_REQUIRE(!ce::has_storage<decltype(m + m)>);
    STATIC_REQUIRE(!ce::has_storage<decltype(m * m)>);
    STATIC_REQUIRE(!ce::has_storage<std::vector<float>>);
}

TEST_CASE("16-bit Eigen scalars are viewed in place with identical bits", "[eigen][types]") {
    Eigen::Matrix<Eigen::half, Eigen::Dynamic, 1> h(4);
    Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, Eigen::Dynamic> b(2, 2);
    const float values[4] = {1.5f, -0.333f, 65504.0f, 1e-6f};
    for (int i = 0; i < 4; ++i) {
        h(i) = Eigen::half(values[i]);
        b.data()[i] = Eigen::bfloat16(values[i]);
    }
    auto hv = ce::view(h, "h");
    auto bv = ce::view(b, "b");
    STATIC_REQUIRE(std::is_same_v<decltype(hv), childtune::tensor_view<childtune::float16>>);
    STATIC_REQUIRE(std::is_same_v<decltype(bv), childtune::tensor_view<childtune::bfloat16>>);
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(hv[i].bits == childtune::float16(values[i]).bits);
        CHECK(bv[i].bits == childtune::bfloat16(values[i]).bits);
        CHECK(static_cast<float>(hv[i]) == static_cast<float>(h(static_cast<Eigen::Index>(i))));
        CHECK(static_cast<float>(bv[i]) == static_cast<float>(b.data()[i]));
    }
    hv[1] = childtune::float16(2.25f);
    bv[3] = childtune::bfloat16(-7.0f);
    CHECK(static_cast<float>(h(1)) == 2.25f);
    CHECK(static_cast<float>(b(1, 1)) == -7.0f);
}

TEST_CASE("views alias the memory of contiguous Eigen objects", "[eigen][view]") {
    SECTION("Matrix, Array, fixed-size, vectors") {
        Eigen::MatrixXf m(3, 4);
        check_aliases(m);
        Eigen::ArrayXXd a(5, 2);
        check_aliases(a);
        Eigen::Matrix4f f;
        check_aliases(f);
        Eigen::VectorXd v(7);
        check_aliases(v);
        Eigen::RowVectorXf r(6);
        check_aliases(r);
        Eigen::ArrayXf av(3);
        check_aliases(av);
        check_aliases(v.segment(2, 4));
        check_aliases(m.array());
    }
    SECTION("row-major matrices in row-major memory order") {
        row_major<float> m(3, 4);
        iota_memory(m);
        auto v = ce::view(m, "m");
        CHECK(v[1] == m(0, 1));
        CHECK(v[4] == m(1, 0));
        check_aliases(m);
        check_aliases(m.middleRows(1, 2)); // whole rows of a row-major matrix
    }
    SECTION("Map and Ref") {
        std::vector<double> buffer(12);
        check_aliases(Eigen::Map<Eigen::MatrixXd>(buffer.data(), 3, 4));
        check_aliases(Eigen::Map<Eigen::VectorXd>(buffer.data() + 2, 10));
        // A Map with explicit strides that happen to be contiguous is accepted.
        check_aliases(Eigen::Map<Eigen::MatrixXd, 0, Eigen::OuterStride<>>(buffer.data(), 3, 4, Eigen::OuterStride<>(3)));
        Eigen::MatrixXf m(4, 6);
        Eigen::Ref<Eigen::MatrixXf> ref = m;
        check_aliases(ref);
        check_aliases(Eigen::Ref<Eigen::MatrixXf>(m.middleCols(2, 3)));
        Eigen::Ref<Eigen::VectorXf> column = m.col(5);
        check_aliases(column);
    }
    SECTION("blocks of whole columns of a column-major matrix") {
        Eigen::MatrixXf m(4, 6);
        iota_memory(m);
        auto v = ce::view(m.middleCols(2, 3), "cols");
        CHECK(v.data() == &m(0, 2));
        CHECK(v.size() == 12);
        CHECK(v[5] == m(1, 3));
        check_aliases(m.col(4));
        check_aliases(m.leftCols(1));
        check_aliases(m.block(0, 1, 4, 2));
        check_aliases(m.block(2, 3, 1, 1)); // one element is contiguous
        check_aliases(m.col(0).segment(1, 2));
    }
    SECTION("a transposed matrix is its memory in the other order") {
        Eigen::MatrixXf m(3, 2);
        iota_memory(m);
        auto v = ce::view(m.transpose(), "mt");
        CHECK(v.data() == m.data());
        CHECK(v[1] == m(1, 0));
    }
    SECTION("empty objects give empty views") {
        Eigen::MatrixXf m(0, 3);
        CHECK(ce::view(m, "m").empty());
        CHECK(ce::is_contiguous(m));
    }
}

TEST_CASE("non-contiguous Eigen objects are rejected with the tensor named", "[eigen][view]") {
    Eigen::MatrixXf m(4, 6);
    std::vector<float> buffer(64);
    const auto rejects = [](auto&& x, const std::string& why) {
        CHECK_FALSE(ce::is_contiguous(x));
        const std::string message = test_support::message_of([&] { (void)ce::view(x, "layer.3.weight"); });
        CHECK_THAT(message, Catch::Contains("'layer.3.weight'") && Catch::Contains("not contiguous") &&
                                Catch::Contains(why));
    };
    SECTION("a row of a column-major matrix") { rejects(m.row(1), "inner stride is 4"); }
    SECTION("a column of a row-major matrix") {
        row_major<float> r(4, 6);
        rejects(r.col(2), "inner stride is 6");
    }
    SECTION("a block that does not span whole columns") {
        rejects(m.block(0, 0, 2, 3), "outer stride is 4");
        rejects(m.topRows(3), "outer stride is 4");
        rejects(m.block(1, 0, 1, 3), "outer stride is 4"); // one row, dynamic block
    }
    SECTION("a Map or Ref with an outer stride") {
        Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> map(buffer.data(), 4, 3, Eigen::OuterStride<>(10));
        rejects(map, "outer stride is 10");
        Eigen::Ref<Eigen::MatrixXf> ref = m.topLeftCorner(2, 2);
        rejects(ref, "outer stride is 4");
    }
    SECTION("a Map or Ref with an inner stride") {
        Eigen::Map<Eigen::VectorXf, 0, Eigen::InnerStride<2>> map(buffer.data(), 8);
        rejects(map, "inner stride is 2");
        Eigen::Ref<Eigen::RowVectorXf, 0, Eigen::InnerStride<>> ref = m.row(0);
        rejects(ref, "inner stride is 4");
    }
    SECTION("a diagonal") { rejects(m.diagonal(), "inner stride is 5"); }
    SECTION("add_parameter names the group, the tensor and the side") {
        childtune::optimizer<childtune::adamw> opt;
        const auto g = opt.add_group("encoder", {});
        Eigen::MatrixXf w(2, 3), grad(4, 3);
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "w", w, grad.topRows(2)); }),
                   Catch::Contains("group 'encoder', tensor 'w': gradient is not contiguous"));
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "w", m.topLeftCorner(2, 3), w); }),
                   Catch::Contains("group 'encoder', tensor 'w': parameter is not contiguous"));
        CHECK(opt.tensor_count() == 0);
    }
}

TEST_CASE("add_parameter pairs a parameter and its gradient element by element", "[eigen][optimizer]") {
    childtune::optimizer<childtune::adamw> opt;
    const auto g = opt.add_group("encoder", {});
    Eigen::MatrixXf w(3, 4);

    SECTION("sizes must agree") {
        Eigen::MatrixXf grad(3, 5);
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "layer.0.weight", w, grad); }),
                   Catch::Contains("tensor 'layer.0.weight': gradient has 15 elements, parameter has 12"));
    }
    SECTION("two matrices must agree in shape") {
        Eigen::MatrixXf grad(4, 3);
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "w", w, grad); }),
                   Catch::Contains("tensor 'w': gradient is 4x3 column-major, parameter is 3x4 column-major"));
    }
    SECTION("two matrices must agree in storage order") {
        row_major<float> grad(3, 4);
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "w", w, grad); }),
                   Catch::Contains("gradient is 3x4 row-major, parameter is 3x4 column-major"));
    }
    SECTION("a flat gradient buffer pairs in memory order") {
        Eigen::VectorXf flat(12);
        ce::add_parameter(opt, g, "w", w, flat);
        Eigen::Map<const Eigen::VectorXf> flat_const(flat.data(), 12);
        Eigen::VectorXf b(12);
        ce::add_parameter(opt, g, "b", b, flat_const);
        CHECK(opt.tensor_count() == 2);
    }
    SECTION("the core's checks still apply") {
        Eigen::MatrixXf grad(3, 4);
        ce::add_parameter(opt, g, "w", w, grad);
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "w2", w, grad); }), Catch::Contains("overlaps"));
        CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, 7, "w3", w, grad); }), Catch::Contains("out of range"));
    }
}

namespace {

//! One tiny model whose tensors use every contiguous layout the adapter takes:
//! a column-major matrix, a row-major matrix, a Map over a user buffer, a block
//! of whole columns of a larger matrix, and a vector.
template <class T>
struct eigen_model {
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    matrix w1{9, 7}, gw1{9, 7};
    row_major<T> w2{7, 5}, gw2{7, 5};
    std::vector<T> w3_buffer = std::vector<T>(30), gw3_buffer = std::vector<T>(30);
    Eigen::Map<matrix> w3{w3_buffer.data(), 5, 6};
    Eigen::Map<const matrix> gw3{gw3_buffer.data(), 5, 6};
    matrix packed{6, 10}, gpacked{6, 10}; // the head lives in columns 2..5
    vector b{6}, gb{6};

    template <class F>
    void for_each(F f) {
        f("encoder.w1", w1, gw1);
        f("encoder.w2", w2, gw2);
        f("encoder.w3", w3, gw3);
        f("head.w", packed.middleCols(2, 4), gpacked.middleCols(2, 4));
        f("head.b", b, gb);
    }
};

template <class T>
void fill_random(T* data, std::size_t n, std::mt19937_64& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<T>(normal(rng));
}

} // namespace

TEMPLATE_TEST_CASE("an AdamW Child-Tuning_F step through the adapter equals the step on std::vector copies",
                   "[eigen][optimizer]", float, double) {
    using T = TestType;
    std::mt19937_64 rng(20211107);
    eigen_model<T> model;
    fill_random(model.packed.data(), static_cast<std::size_t>(model.packed.size()), rng);
    model.for_each([&](const char*, auto&& param, auto&&) {
        fill_random(param.data(), static_cast<std::size_t>(param.size()), rng);
    });
    const auto packed_before = model.packed;

    // The reference: every tensor copied into a std::vector in memory order.
    struct flat {
        std::vector<T> param, grad;
    };
    std::vector<flat> copies;
    model.for_each([&](const char*, auto&& param, auto&&) {
        copies.push_back({std::vector<T>(param.data(), param.data() + param.size()),
                          std::vector<T>(static_cast<std::size_t>(param.size()))});
    });

    childtune::adamw::options o;
    o.lr = 3e-3;
    o.weight_decay = 0.01;
    o.flavour = childtune::adamw_flavour::legacy;
    const childtune::bernoulli mask{0.3, 42};
    childtune::optimizer<childtune::adamw> through_eigen(mask), through_vectors(mask);
    for (auto* opt : {&through_eigen, &through_vectors}) {
        opt->add_group("encoder", o, true);
        opt->add_group("head", o, false);
    }
    std::size_t i = 0;
    model.for_each([&](const char* name, auto&& param, auto&& grad) {
        const std::size_t group = std::string(name).starts_with("head") ? 1 : 0;
        ce::add_parameter(through_eigen, group, name, param, grad);
        through_vectors.add_parameter(group, name, copies[i].param, copies[i].grad);
        ++i;
    });

    for (int step = 0; step < 5; ++step) {
        i = 0;
        model.for_each([&](const char*, auto&&, auto&& grad) {
            // Gradients are written through the original buffers (gw3 is a const
            // Map, so through its buffer) and copied to the reference.
            T* g = const_cast<T*>(grad.data());
            fill_random(g, static_cast<std::size_t>(grad.size()), rng);
            std::memcpy(copies[i].grad.data(), g, copies[i].grad.size() * sizeof(T));
            ++i;
        });
        through_eigen.step();
        through_vectors.step();
    }

    i = 0;
    model.for_each([&](const char* name, auto&& param, auto&&) {
        INFO(name);
        REQUIRE(std::memcmp(param.data(), copies[i].param.data(), copies[i].param.size() * sizeof(T)) == 0);
        ++i;
    });
    std::ostringstream a, b;
    through_eigen.save(a);
    through_vectors.save(b);
    CHECK(a.str() == b.str());

    // The head moved inside its columns of the packed matrix and nowhere else.
    CHECK(model.packed.leftCols(2) == packed_before.leftCols(2));
    CHECK(model.packed.rightCols(4) == packed_before.rightCols(4));
    CHECK(model.packed.middleCols(2, 4) != packed_before.middleCols(2, 4));
}

TEST_CASE("a bfloat16 step through the adapter equals the step on childtune::bfloat16 copies", "[eigen][optimizer]") {
    using bf = Eigen::bfloat16;
    Eigen::Matrix<bf, Eigen::Dynamic, Eigen::Dynamic> w(16, 8), g(16, 8);
    std::mt19937_64 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (Eigen::Index k = 0; k < w.size(); ++k) w.data()[k] = bf(normal(rng));
    std::vector<childtune::bfloat16> wc(static_cast<std::size_t>(w.size())), gc(wc.size());
    std::memcpy(static_cast<void*>(wc.data()), w.data(), wc.size() * 2);

    childtune::optimizer<childtune::adamw> a(childtune::bernoulli{0.5, 1}), b(childtune::bernoulli{0.5, 1});
    ce::add_parameter(a, a.add_group("encoder", {}), "w", w, g);
    b.add_parameter(b.add_group("encoder", {}), "w", wc, gc);
    for (int step = 0; step < 3; ++step) {
        for (Eigen::Index k = 0; k < g.size(); ++k) g.data()[k] = bf(normal(rng));
        std::memcpy(static_cast<void*>(gc.data()), g.data(), gc.size() * 2);
        a.step();
        b.step();
    }
    CHECK(std::memcmp(w.data(), wc.data(), wc.size() * 2) == 0);
}

TEST_CASE("rebind points a tensor at new Eigen memory and keeps its state", "[eigen][optimizer]") {
    childtune::optimizer<childtune::adamw> opt;
    const auto g = opt.add_group("encoder", {});
    Eigen::MatrixXd w = Eigen::MatrixXd::Ones(3, 3), grad = Eigen::MatrixXd::Ones(3, 3);
    ce::add_parameter(opt, g, "w", w, grad);
    opt.step();
    Eigen::MatrixXd moved = w, moved_grad = grad;
    ce::rebind(opt, "w", moved, moved_grad);
    opt.step();
    CHECK(moved(0, 0) < w(0, 0));
    const auto before = w;
    opt.step();
    CHECK(w == before);
    Eigen::MatrixXd small(2, 2);
    CHECK_THAT(test_support::message_of([&] { ce::rebind(opt, "w", small, small); }), Catch::Contains("cannot rebind"));
}

TEST_CASE("bad input: an Eigen parameter aliasing its gradient is refused, and changes nothing", "[eigen][bad_input]") {
    childtune::optimizer<childtune::adamw> opt;
    const auto g = opt.add_group("g", {});
    Eigen::MatrixXf w = Eigen::MatrixXf::Ones(4, 4), grad = Eigen::MatrixXf::Ones(4, 4);
    ce::add_parameter(opt, g, "w", w, grad);
    std::ostringstream before;
    opt.save(before);
    Eigen::MatrixXf x = Eigen::MatrixXf::Zero(4, 4);
    // The same object as its own gradient, and a gradient overlapping its parameter.
    CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "x", x, x); }),
               Catch::Contains("tensor 'x'") && Catch::Contains("parameter and gradient memory overlap"));
    Eigen::VectorXf buf = Eigen::VectorXf::Zero(24);
    CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "half", buf.head(16), buf.tail(16)); }),
               Catch::Contains("tensor 'half'") && Catch::Contains("parameter and gradient memory overlap"));
    CHECK_THAT(test_support::message_of([&] { ce::add_parameter(opt, g, "reads_w", x, w); }),
               Catch::Contains("gradient memory overlaps the parameter of tensor 'w'"));
    CHECK_THAT(test_support::message_of([&] { ce::rebind(opt, "w", w, w); }), Catch::Contains("parameter and gradient memory overlap"));
    // Empty objects register and step (nothing to do).
    Eigen::VectorXf empty_p, empty_g;
    ce::add_parameter(opt, g, "empty", empty_p, empty_g);
    CHECK(opt.tensor_count() == 2);
    std::ostringstream after;
    childtune::optimizer<childtune::adamw> reference;
    reference.add_group("g", {});
    ce::add_parameter(reference, 0, "w", w, grad);
    reference.save(after);
    CHECK(before.str() == after.str());
    CHECK(w == Eigen::MatrixXf::Ones(4, 4));
    CHECK(x == Eigen::MatrixXf::Zero(4, 4));
}

TEST_CASE("mask from: Eigen objects and expressions of 0/1 values, in memory order", "[eigen][mask_from]") {
    Eigen::MatrixXf m(2, 3); // column-major: memory order m(0,0), m(1,0), m(0,1), ...
    m << 1, 0, 0,
         0, 0, 1;
    const childtune::bit_mask a = childtune::eigen::mask_from("w", m);
    CHECK(a.size() == 6);
    CHECK(a.words()[0] == 0b100001u); // elements 0 (m(0,0)) and 5 (m(1,2))
    Eigen::ArrayXXf scores(2, 3);
    scores << 0.9f, 0.1f, 0.2f,
              0.3f, 0.4f, 0.8f;
    CHECK(childtune::eigen::mask_from("w", (scores > 0.5f)) == a); // a bool expression
    Eigen::Matrix<int, 2, 3, Eigen::RowMajor> r; // row-major: memory order r(0,0), r(0,1), ...
    r << 1, 0, 0,
         0, 0, 1;
    CHECK(childtune::eigen::mask_from("w", r).words()[0] == 0b100001u);
    Eigen::Matrix<Eigen::half, 2, 1> h;
    h << Eigen::half(1.0f), Eigen::half(0.0f);
    CHECK(childtune::eigen::mask_from("h", h).words()[0] == 1u);
    m(1, 1) = 2.0f; // memory element 3
    try {
        (void)childtune::eigen::mask_from("encoder.w", m);
        FAIL("no error");
    } catch (const childtune::error& e) {
        CHECK(std::string(e.what()) ==
              "childtune: mask from values: tensor 'encoder.w', element 3 is 2; a mask holds only 0 (masked out) and 1 (kept)");
    }
}
