#pragma once
// A small model for the distributed tests: three masked tensors of three element
// types and one dense head, 842 elements, so world size 3 cuts slices unevenly
// (281, 281, 280) and inside tensors (at w0[281] and w2[61]; world size 2 at
// w1[120]). Parameters and per-step gradients are pure functions of the seed and
// step, so every rank builds the same ones without communication.

#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/update/adamw.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace dist_test {

struct model {
    std::vector<float> w0 = std::vector<float>(301), g0 = std::vector<float>(301);
    std::vector<childtune::bfloat16> w1 = std::vector<childtune::bfloat16>(200), g1 = std::vector<childtune::bfloat16>(200);
    std::vector<double> w2 = std::vector<double>(330), g2 = std::vector<double>(330);
    std::vector<float> head = std::vector<float>(11), ghead = std::vector<float>(11);

    explicit model(unsigned seed = 17) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> n;
        for (auto& x : w0) x = n(rng);
        for (auto& x : w1) x = childtune::bfloat16(n(rng));
        for (auto& x : w2) x = n(rng);
        for (auto& x : head) x = n(rng);
    }
    //! The gradients of step `step` (all-reduced already, in a real run).
    void gradients(std::uint64_t step) {
        std::mt19937 rng(static_cast<unsigned>(1000 + step));
        std::normal_distribution<float> n;
        for (auto& x : g0) x = n(rng);
        for (auto& x : g1) x = childtune::bfloat16(n(rng));
        for (auto& x : g2) x = n(rng);
        for (auto& x : ghead) x = n(rng);
    }
    //! Small integer gradients of Fisher batch `batch`: their squares and sums
    //! are exact in float, so Fisher sums do not depend on the summation order.
    void integer_gradients(std::uint64_t batch) {
        std::mt19937 rng(static_cast<unsigned>(5000 + batch));
        std::uniform_int_distribution<int> d(-6, 6);
        for (auto& x : g0) x = static_cast<float>(d(rng));
        for (auto& x : g1) x = childtune::bfloat16(static_cast<float>(d(rng)));
        for (auto& x : g2) x = d(rng);
    }
    //! Registers the tensors with `opt` (a core or a sharded optimizer of any
    //! rule): the encoder group masked, the head dense with 10 times the lr.
    template <class Opt>
    void attach(Opt& opt, const typename Opt::options_type& o = {}) {
        const auto enc = opt.add_group("encoder", o, true);
        auto head_options = o;
        head_options.lr *= 10;
        const auto hd = opt.add_group("head", head_options, false);
        opt.add_parameter(enc, "layer.0.weight", w0, g0);
        opt.add_parameter(enc, "layer.0.bias", w1, g1);
        opt.add_parameter(enc, "layer.1.weight", w2, g2);
        opt.add_parameter(hd, "head.weight", head, ghead);
    }
    template <class Score>
    void add_fisher_tensors(childtune::fisher_accumulator<Score>& acc) const {
        acc.add_tensor("layer.0.weight", w0.size());
        acc.add_tensor("layer.0.bias", w1.size());
        acc.add_tensor("layer.1.weight", w2.size());
    }
    template <class Score>
    void accumulate(childtune::fisher_accumulator<Score>& acc) const {
        acc.accumulate("layer.0.weight", g0);
        acc.accumulate("layer.0.bias", g1);
        acc.accumulate("layer.1.weight", g2);
        acc.end_batch();
    }
    std::size_t elements() const { return w0.size() + w1.size() + w2.size() + head.size(); }
    //! Bit-for-bit equality of all parameters.
    friend bool same_bits(const model& a, const model& b) {
        return std::memcmp(a.w0.data(), b.w0.data(), a.w0.size() * sizeof(float)) == 0 &&
               std::memcmp(a.w1.data(), b.w1.data(), a.w1.size() * sizeof(childtune::bfloat16)) == 0 &&
               std::memcmp(a.w2.data(), b.w2.data(), a.w2.size() * sizeof(double)) == 0 &&
               std::memcmp(a.head.data(), b.head.data(), a.head.size() * sizeof(float)) == 0;
    }
};

inline childtune::adamw::options test_options() {
    childtune::adamw::options o;
    o.lr = 1e-2;
    o.weight_decay = 0.05;
    o.flavour = childtune::adamw_flavour::legacy;
    return o;
}

//! `steps` steps of `opt` over a fresh model (gradients of steps 0, 1, ...).
template <class Opt>
model run_steps(Opt& opt, const typename Opt::options_type& o, int steps, std::size_t* state_bytes) {
    model m;
    m.attach(opt, o);
    for (int s = 0; s < steps; ++s) {
        m.gradients(static_cast<std::uint64_t>(s));
        opt.step();
    }
    if (state_bytes) *state_bytes = opt.state_bytes();
    return m;
}

//! `steps` steps of the single-process core optimizer with rule R.
template <class R>
model run_reference(const typename R::options& o, const childtune::mask_mode& mode, int steps,
                    std::size_t* state_bytes = nullptr) {
    childtune::optimizer<R> opt(mode);
    return run_steps(opt, o, steps, state_bytes);
}
//! The same with legacy AdamW and test_options().
inline model run_reference(const childtune::mask_mode& mode, int steps, std::size_t* state_bytes = nullptr) {
    return run_reference<childtune::adamw>(test_options(), mode, steps, state_bytes);
}

//! The same runs on the sharded optimizer over `comm`.
template <class R, class Comm>
model run_sharded(const Comm& comm, const typename R::options& o, const childtune::mask_mode& mode, int steps,
                  std::size_t* state_bytes = nullptr) {
    childtune::sharded_optimizer<R, Comm> opt(comm, mode);
    return run_steps(opt, o, steps, state_bytes);
}
template <class Comm>
model run_sharded(const Comm& comm, const childtune::mask_mode& mode, int steps, std::size_t* state_bytes = nullptr) {
    return run_sharded<childtune::adamw>(comm, test_options(), mode, steps, state_bytes);
}

//! The Child-Tuning_D mask of `batches` integer-gradient batches in one process.
inline childtune::top_p_result single_process_fisher(int batches, double p) {
    model m;
    childtune::fisher_accumulator<float> acc;
    m.add_fisher_tensors(acc);
    for (int b = 0; b < batches; ++b) {
        m.integer_gradients(static_cast<std::uint64_t>(b));
        m.accumulate(acc);
    }
    return acc.select(p);
}

} // namespace dist_test
