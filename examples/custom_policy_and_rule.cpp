// A mask policy and an update rule written by a user, in this file only, used by
// childtune::optimizer without any change to the library:
//
// - `layerwise_bernoulli`: Child-Tuning_F with a keep probability per layer
//   (lower layers keep less), saved and restored with the optimizer's state;
// - `normalized_sgd`: p -= lr * g / ||g||, whose norm is a per-tensor phase
//   (update_rule's reduce/finish), so the step length does not depend on the
//   gradient's scale.
//
// It fits a two-layer linear model to a fixed target by least squares, under
// both, checks that the loss fell and that a run saved and resumed halfway ends
// on the same bits as the uninterrupted one.
//
//     custom_policy_and_rule [--steps N]

#include <childtune/childtune.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// ---- the mask policy ------------------------------------------------------------------

//! Keeps elements of "layer.N..." with probability p[N] (Child-Tuning_F per layer).
struct layerwise_bernoulli {
    std::array<double, 2> p{0.2, 0.6};
    std::uint64_t seed = 7;

    static constexpr std::string_view policy_name = "example.layerwise_bernoulli";

    void validate() const {
        for (double x : p)
            if (!(x > 0.0 && x <= 1.0)) childtune::detail::fail("layerwise_bernoulli: p must be in (0, 1]");
    }
    //! The library's Bernoulli view at this layer's p: the same draws on every
    //! backend, and native on GPUs.
    childtune::bernoulli_view view(const childtune::tensor_info& t, std::uint64_t step) const {
        const std::size_t layer = t.name.size() > 6 && t.name[6] == '1' ? 1 : 0;
        return childtune::bernoulli{p[layer], seed}.view(t, step);
    }
    void save(childtune::policy_writer& w) const {
        w.value(p[0]);
        w.value(p[1]);
        w.value(seed);
    }
    static layerwise_bernoulli load(childtune::policy_reader& r) {
        layerwise_bernoulli m;
        m.p[0] = r.value<double>();
        m.p[1] = r.value<double>();
        m.seed = r.value<std::uint64_t>();
        return m;
    }
};

// ---- the update rule ---------------------------------------------------------------------

//! Normalized SGD: p -= lr * g / ||g||, with the masked gradient's norm over the tensor.
struct normalized_sgd {
    static constexpr bool inline_apply = true;
    static constexpr std::string_view name = "example.normalized_sgd";
    static constexpr std::size_t max_state_buffers = 0;
    static constexpr std::size_t reduction_count = 1; //!< ||g||²

    struct options {
        double lr = 0.05;
        friend bool operator==(const options&, const options&) = default;
    };
    static void validate(const options& o, std::string_view group) {
        if (!(o.lr >= 0.0)) childtune::detail::fail("group '" + std::string(group) + "': lr must be >= 0");
    }
    static std::size_t state_buffers(const options&) { return 0; }
    static constexpr std::size_t option_count = 1;
    static std::array<double, 1> to_values(const options& o) { return {o.lr}; }
    static options from_values(const std::array<double, 1>& v) { return {v[0]}; }

    template <class S>
    struct step_constants {
        double lr;
        S neg_step; //!< -lr / ||g||, from finish()
    };
    template <class S>
    static step_constants<S> prepare(const options& o, std::uint64_t, bool) {
        return {o.lr, S(0)};
    }
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static V masked(const childtune::element_mask<K, V>& e, const V& g) {
        return childtune::detail::select(e.gradient_kept, e.rescaled_gradient(g), V(S(0)));
    }
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void reduce(const step_constants<S>&, const childtune::element_mask<K, V>& e, const V&, const V& g,
                                           V (&)[2], V (&terms)[1]) {
        const V m = masked<V, K, S>(e, g);
        terms[0] = m * m;
    }
    template <class S>
    static void finish(step_constants<S>& c, const std::array<double, 1>& sums) {
        c.neg_step = static_cast<S>(sums[0] > 0.0 ? -c.lr / std::sqrt(sums[0]) : 0.0);
    }
    template <class V, class K, class S>
    CHILDTUNE_HD_INLINE static void apply(const step_constants<S>& c, const childtune::element_mask<K, V>& e, V& p, const V& g,
                                          V (&)[2]) {
        p = childtune::detail::select(e.update_kept, p + V(c.neg_step) * masked<V, K, S>(e, g), p);
    }
};
static_assert(childtune::mask_policy<layerwise_bernoulli> && childtune::update_rule<normalized_sgd>);

// ---- the problem ---------------------------------------------------------------------------

//! y = W1 · (W0 · x) fitted to a fixed target map by least squares on 64 inputs.
struct model {
    static constexpr std::size_t n = 8;
    std::vector<float> w0 = std::vector<float>(n * n), w1 = std::vector<float>(n * n);
    std::vector<float> g0 = std::vector<float>(n * n), g1 = std::vector<float>(n * n);

    model() {
        for (std::size_t i = 0; i < n * n; ++i) {
            w0[i] = (i % (n + 1) == 0 ? 1.0f : 0.0f) + 0.01f * static_cast<float>(i % 7);
            w1[i] = (i % (n + 1) == 0 ? 1.0f : 0.0f) - 0.01f * static_cast<float>(i % 5);
        }
    }
    static float target(std::size_t r, std::size_t c) { return r == c ? 2.0f : (r + 1 == c ? 0.5f : 0.0f); }
    //! Loss and gradients of ||W1 W0 - T||² / 2 (the least-squares loss over a
    //! basis of inputs).
    float loss_and_gradients() {
        std::vector<float> h(n * n, 0.0f), r(n * n, 0.0f);
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t k = 0; k < n; ++k) h[i * n + j] += w1[i * n + k] * w0[k * n + j];
        float loss = 0.0f;
        for (std::size_t i = 0; i < n * n; ++i) {
            r[i] = h[i] - target(i / n, i % n);
            loss += 0.5f * r[i] * r[i];
        }
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                float a = 0.0f, b = 0.0f;
                for (std::size_t k = 0; k < n; ++k) {
                    a += w1[k * n + i] * r[k * n + j]; // dL/dW0 = W1^T R
                    b += r[i * n + k] * w0[j * n + k]; // dL/dW1 = R W0^T
                }
                g0[i * n + j] = a;
                g1[i * n + j] = b;
            }
        return loss;
    }
};

struct run_result {
    float first_loss = 0.0f, last_loss = 0.0f;
    std::string weights;
};

//! `steps` steps; with `resume_at` > 0, saved after that step and continued in a
//! new optimizer restored from the file.
run_result train(int steps, int resume_at) {
    model m;
    const auto build = [&] {
        auto opt = std::make_unique<childtune::optimizer<normalized_sgd>>(layerwise_bernoulli{});
        const auto layers = opt->add_group("layers", {.lr = 0.05});
        opt->add_parameter(layers, "layer.0.weight", m.w0, m.g0);
        opt->add_parameter(layers, "layer.1.weight", m.w1, m.g1);
        return opt;
    };
    auto opt = build();
    run_result out;
    for (int t = 0; t < steps; ++t) {
        const float loss = m.loss_and_gradients();
        if (t == 0) out.first_loss = loss;
        out.last_loss = loss;
        opt->step();
        if (t + 1 == resume_at) {
            std::stringstream file;
            opt->save(file);
            opt = build(); // as a new process would: policy and groups set up again
            opt->load(file);
        }
    }
    out.weights.assign(reinterpret_cast<const char*>(m.w0.data()), m.w0.size() * sizeof(float));
    out.weights.append(reinterpret_cast<const char*>(m.w1.data()), m.w1.size() * sizeof(float));
    return out;
}

int main(int argc, char** argv) {
    int steps = 300;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--steps N]\n", argv[0]);
            return 2;
        }
    }
    if (steps < 2) {
        std::fprintf(stderr, "--steps must be at least 2\n");
        return 2;
    }
    const run_result straight = train(steps, 0);
    const run_result resumed = train(steps, steps / 2);
    std::printf("normalized SGD under a layer-wise Bernoulli mask, %d steps: loss %.4f -> %.4f\n", steps,
                static_cast<double>(straight.first_loss), static_cast<double>(straight.last_loss));
    const bool fell = straight.last_loss < 0.5f * straight.first_loss;
    const bool same = straight.weights == resumed.weights;
    std::printf("loss fell by half: %s; saved at step %d and resumed: %s\n", fell ? "yes" : "NO", steps / 2,
                same ? "the same bits" : "DIFFERENT BITS");
    return fell && same ? 0 : 1;
}
