#pragma once
//! \file
//! The keep decisions of one tensor at one step, whatever policy made them: what
//! the registry hands an executor.
//!
//! Built-in view types are kept as themselves, so every executor runs them
//! natively (a GPU kernel computes Bernoulli draws or reads packed words on the
//! device). A policy's own view type is kept behind two function pointers
//! (`custom_mask_view`); CPU executors call them for 64 decisions at a time, and
//! device executors turn them into packed words on the host.

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <variant>

namespace childtune {

//! A mask_view of a type the library does not know, behind function pointers.
class custom_mask_view {
public:
    //! Not known to be dense at compile time.
    static constexpr bool is_dense = false;

    //! Holds a copy of `v` (any mask_view) and the two functions that read it.
    // The self-test comes first: checking mask_view<custom_mask_view> (copyable)
    // must not consider this constructor.
    template <class V>
        requires(!std::same_as<std::remove_cvref_t<V>, custom_mask_view> && mask_view<V>)
    explicit custom_mask_view(V v)
        : self_(std::make_shared<const V>(std::move(v))),
          keep_([](const void* s, std::uint64_t i) { return static_cast<const V*>(s)->keep(i); }),
          bits64_([](const void* s, std::uint64_t first) { return static_cast<const V*>(s)->bits64(first); }),
          p_(static_cast<double>(static_cast<const V*>(self_.get())->keep_probability())) {}

    //! Whether element `i` is kept (one indirect call).
    bool keep(std::uint64_t i) const { return keep_(self_.get(), i); }
    //! Keep bits of elements first .. first + 63 (one indirect call for 64 decisions).
    std::uint64_t bits64(std::uint64_t first) const { return bits64_(self_.get(), first); }
    //! What kept gradients are divided by (read once at construction).
    double keep_probability() const { return p_; }

private:
    std::shared_ptr<const void> self_;
    bool (*keep_)(const void*, std::uint64_t);
    std::uint64_t (*bits64_)(const void*, std::uint64_t);
    double p_;
};

//! Any mask_view. `dense()` says (at run time) that every element is kept.
class any_mask_view {
public:
    //! The view types any_mask_view holds: the built-in ones natively, others through custom_mask_view.
    using alternatives = std::variant<dense_view, bernoulli_view, fixed_view, custom_mask_view>;
    //! Only known at run time (see dense()).
    static constexpr bool is_dense = false;

    any_mask_view() = default;
    //! Holds `v`; a view of an unknown type is wrapped in custom_mask_view.
    template <class V>
        requires(!std::same_as<std::remove_cvref_t<V>, any_mask_view> && mask_view<V>)
    any_mask_view(V v) // NOLINT(google-explicit-constructor): a view is a view
        : v_(wrap(std::move(v))) {}

    //! Whether element `i` is kept.
    bool keep(std::uint64_t i) const {
        return std::visit([&](const auto& v) { return v.keep(i); }, v_);
    }
    //! Keep bits of elements first .. first + 63 (bit j: element first + j).
    std::uint64_t bits64(std::uint64_t first) const {
        return std::visit([&](const auto& v) { return v.bits64(first); }, v_);
    }
    //! What kept gradients are divided by (p for Child-Tuning_F, else 1).
    double keep_probability() const {
        return std::visit([](const auto& v) { return static_cast<double>(v.keep_probability()); }, v_);
    }
    //! Whether the view is the dense one.
    bool dense() const { return std::holds_alternative<dense_view>(v_); }
    //! The held view, for executors that run the built-in types natively.
    const alternatives& get() const { return v_; }

    //! Keep words of elements first, first + 64, ... (`count` of them) into `out`.
    void words(std::uint64_t first, std::size_t count, std::uint64_t* out) const {
        std::visit(
            [&](const auto& v) {
                if constexpr (requires { v.words(first, count, out); })
                    v.words(first, count, out);
                else
                    for (std::size_t k = 0; k < count; ++k) out[k] = v.bits64(first + 64 * k);
            },
            v_);
    }
    //! The packed words themselves when they can be read in place from `first`
    //! (a fixed view whose element `first` starts a word), else null.
    const std::uint64_t* words_in_place(std::uint64_t first) const {
        const auto* f = std::get_if<fixed_view>(&v_);
        if (!f || (f->offset() + first) % 64 != 0) return nullptr;
        return f->words() + (f->offset() + first) / 64;
    }

    //! Keep words a CPU pass can draw itself (Child-Tuning_F), see draws_from().
    struct pass_draws {
        const detail::philox_keep_params* params = nullptr; //!< the keep stream; null: fetch words instead
        std::uint64_t first_word = 0;                       //!< the Philox keep word that starts at `first`
    };
    //! The generator's parameters and the index of the keep word that starts at
    //! element `first`, when the view is a Bernoulli one that keeps less than
    //! everything and element `first` starts a 128-element group (version 3: a
    //! 256-element super-group), so that words come in the batches the
    //! definition draws together; else params is null.
    pass_draws draws_from(std::uint64_t first) const {
        const auto* b = std::get_if<bernoulli_view>(&v_);
        const std::uint64_t group = b && b->version() == 3 ? 256 : 128;
        if (!b || b->keep_probability() >= 1.0 || (b->offset() + first) % group != 0) return {};
        return {&b->keep_params(), (b->offset() + first) / 64};
    }

private:
    template <class V>
    static alternatives wrap(V v) {
        if constexpr (std::is_same_v<V, dense_view> || std::is_same_v<V, bernoulli_view> ||
                      std::is_same_v<V, fixed_view> || std::is_same_v<V, custom_mask_view>)
            return v;
        else if constexpr (V::is_dense)
            return dense_view{};
        else
            return custom_mask_view(std::move(v));
    }
    alternatives v_{dense_view{}};
};

} // namespace childtune
