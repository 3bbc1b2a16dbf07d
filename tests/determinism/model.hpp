#pragma once
// The model the determinism tests train: tensors of mixed storage types (fp32,
// bf16, double), odd sizes and a masked/unmasked split, with gradients that are a
// pure function of (tensor, step, element), so that every run of "the same
// training" sees the same inputs without sharing a random-number generator.

#include <childtune/mask/fisher.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/optimizer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace determinism {

//! One tensor of the model: name, storage type, element count, and whether its
//! group follows the mask mode (the reference masks the encoder layers only).
struct tensor_spec {
    const char* name;
    childtune::dtype type;
    std::size_t size;
    bool masked;
};

using storage = std::variant<std::vector<float>, std::vector<childtune::bfloat16>, std::vector<double>>;

//! splitmix64: a stateless hash, so element i of step t never depends on how many
//! values were drawn before it.
inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
//! Uniform in [-1, 1), 53 bits.
inline double noise(std::uint64_t stream, std::uint64_t i) {
    return static_cast<double>(mix(mix(stream) ^ i) >> 11) * 0x1p-52 - 1.0;
}

template <class P>
P from_double(double x) {
    if constexpr (std::is_same_v<P, double>) return x;
    else return P(static_cast<float>(x));
}

//! One buffer per tensor of a model: its parameters, or one step's gradients.
struct tensors {
    std::vector<storage> t;

    //! Values scale·noise(stream·1000 + tensor, element); `zero_every` > 0 puts an
    //! exact zero at every such element (gradients of unused inputs: ties in the
    //! Fisher scores).
    tensors(const std::vector<tensor_spec>& specs, std::uint64_t stream, double scale, std::size_t zero_every = 0) {
        for (std::size_t k = 0; k < specs.size(); ++k) {
            const auto fill = [&](auto v) {
                using P = typename decltype(v)::value_type;
                v.resize(specs[k].size);
                for (std::size_t i = 0; i < v.size(); ++i)
                    v[i] = from_double<P>(zero_every != 0 && i % zero_every == 0 ? 0.0 : scale * noise(stream * 1000 + k, i));
                t.emplace_back(std::move(v));
            };
            switch (specs[k].type) {
            case childtune::dtype::bfloat16: fill(std::vector<childtune::bfloat16>{}); break;
            case childtune::dtype::float64: fill(std::vector<double>{}); break;
            default: fill(std::vector<float>{}); break;
            }
        }
    }

    //! Every tensor's bytes, concatenated.
    std::string bytes() const {
        std::string out;
        for (const auto& s : t)
            std::visit([&](const auto& v) { out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0])); }, s);
        return out;
    }
    //! Copies `other`'s values into these buffers (same layout), keeping the memory
    //! the optimizer points at.
    void assign(const tensors& other) {
        for (std::size_t k = 0; k < t.size(); ++k)
            std::visit(
                [&](auto& v) {
                    const auto& from = std::get<std::remove_cvref_t<decltype(v)>>(other.t[k]);
                    std::copy(from.begin(), from.end(), v.begin()); // never reallocates
                },
                t[k]);
    }
};

//! "" when both models hold the same bits, else the first differing tensor and
//! element (a readable failure instead of two megabyte strings).
inline std::string first_difference(const std::vector<tensor_spec>& specs, const tensors& a, const tensors& b) {
    for (std::size_t k = 0; k < specs.size(); ++k) {
        std::string where;
        std::visit(
            [&](const auto& x) {
                const auto& y = std::get<std::remove_cvref_t<decltype(x)>>(b.t[k]);
                if (x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0) return;
                if (x.size() != y.size()) {
                    where = std::string(specs[k].name) + " (size)";
                    return;
                }
                for (std::size_t i = 0; i < x.size(); ++i)
                    if (std::memcmp(&x[i], &y[i], sizeof(x[i])) != 0) {
                        where = std::string(specs[k].name) + "[" + std::to_string(i) + "]";
                        return;
                    }
            },
            a.t[k]);
        if (!where.empty()) return where;
    }
    return "";
}

//! Registers the model with `opt`: group "layers" (masked) and group "other"
//! (dense, ten times the learning rate, as a task head would have).
template <class Rule>
void attach(childtune::optimizer<Rule>& opt, const std::vector<tensor_spec>& specs, tensors& w, const tensors& g,
            const typename Rule::options& o) {
    auto other = o;
    other.lr *= 10;
    opt.add_group("layers", o, true);
    opt.add_group("other", other, false);
    for (std::size_t k = 0; k < specs.size(); ++k)
        std::visit(
            [&](auto& v) {
                using V = std::remove_cvref_t<decltype(v)>;
                opt.add_parameter(specs[k].masked ? 0 : 1, specs[k].name, v, std::get<V>(g.t[k]));
            },
            w.t[k]);
}

//! The Child-Tuning_D pipeline's first half: Fisher scores of the masked tensors
//! over `batches` batches of gradients (every 13th element exactly zero, so the
//! scores tie), accumulated on `backend`; select() then makes the global cut.
template <class Score, class Backend>
childtune::fisher_accumulator<Score> fisher_scores(const std::vector<tensor_spec>& specs, int batches,
                                                   childtune::fisher_options options, const Backend& backend) {
    childtune::fisher_accumulator<Score> acc(options);
    for (const auto& s : specs)
        if (s.masked) acc.add_tensor(s.name, s.size);
    for (int b = 0; b < batches; ++b) {
        const tensors g(specs, 500 + static_cast<std::uint64_t>(b), 0.1, 13);
        for (std::size_t k = 0; k < specs.size(); ++k)
            if (specs[k].masked) std::visit([&](const auto& v) { acc.accumulate(specs[k].name, v, backend); }, g.t[k]);
        acc.end_batch();
    }
    return acc;
}

//! The reference's setting: per-tensor clipping to norm 1, N known.
inline childtune::fisher_options reference_fisher(int batches) {
    return {.max_grad_norm = 1.0, .num_batches = static_cast<std::size_t>(batches)};
}

//! "" when two files hold the same bytes, else where they first differ (Catch
//! would print both binary files).
inline std::string byte_difference(const std::string& a, const std::string& b) {
    if (a == b) return "";
    std::size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return "first difference at byte " + std::to_string(i) + " (sizes " + std::to_string(a.size()) + " and " +
           std::to_string(b.size()) + ")";
}

template <class Opt>
std::string saved(const Opt& opt) {
    std::ostringstream out;
    opt.save(out);
    return out.str();
}

} // namespace determinism
