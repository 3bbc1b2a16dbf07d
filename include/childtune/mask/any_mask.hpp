#pragma once
//! \file
//! Any mask policy, by value: how the optimizer holds the built-in policies and
//! the user's own side by side (one per parameter group, if wanted) without a
//! closed list of types.
//!
//! A policy type M (a mask_policy) is erased when it is assigned. The optional
//! members of the concept (check_tensors, save/load, ==) are found here, at
//! that point, so the registry and the executors never name a policy type.
//! Copies share the (immutable) policy. The built-in policies are held as the
//! mask_mode of 0.1, so optimizers can still hand out a `const mask_mode&`.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/mask/tensor_info.hpp>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace childtune {

//! Any mask_policy behind one type: the optimizer-wide mask and each group's own
//! policy are held as any_mask. Copies share the immutable policy.
class any_mask {
public:
    //! The dense policy.
    any_mask() : any_mask(dense{}) {}
    //! Holds `policy` (any mask_policy); the optional members are found here.
    // The self-test comes first: checking mask_policy<any_mask> (copyable) must
    // not consider this constructor.
    template <class M>
        requires(!std::same_as<std::remove_cvref_t<M>, any_mask> && mask_policy<M>)
    any_mask(M policy) { // NOLINT(google-explicit-constructor): a policy is a mask
        if constexpr (std::is_same_v<M, dense> || std::is_same_v<M, bernoulli> || std::is_same_v<M, fixed>)
            self_ = std::make_shared<const builtin_model>(mask_mode{std::move(policy)});
        else
            self_ = std::make_shared<const model<M>>(std::move(policy));
    }
    //! One of the built-in policies.
    any_mask(mask_mode mode) // NOLINT(google-explicit-constructor)
        : self_(std::make_shared<const builtin_model>(std::move(mode))) {}

    //! Checks the policy's hyperparameters (throws childtune::error).
    void validate() const { self_->validate(); }
    //! The keep decisions of tensor `t` at `step`.
    any_mask_view view(const tensor_info& t, std::uint64_t step) const { return self_->view(t, step); }
    //! Throws when the policy cannot serve the tensors that use it (mask_policy).
    void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const {
        self_->check_tensors(users, registered);
    }

    //! Whether the policy chooses its masks from each step's gradients
    //! (gradient_reading_policy): the optimizer then calls observe() every step.
    bool reads_gradients() const { return self_->reads_gradients(); }
    //! The policy's next value from this step's gradients (gradient_reading_policy);
    //! a policy that does not read gradients returns itself.
    any_mask observe(const gradient_reader& g, std::uint64_t step) const {
        any_mask out;
        out.self_ = self_->observe(g, step);
        if (!out.self_) out.self_ = self_;
        return out;
    }

    //! Whether state files can hold the policy, and under which name.
    bool saveable() const { return !self_->policy_name().empty(); }
    //! The policy's name in state files (empty when it cannot be saved).
    std::string_view policy_name() const { return self_->policy_name(); }
    //! Writes the policy's record (its hyperparameters) into a state file.
    void save(detail::binary_writer& w) const {
        if (!saveable())
            detail::fail("mask policy of type '" + std::string(type().name()) +
                         "' cannot be saved: give it a policy_name, save(policy_writer&) and a static load(policy_reader&)");
        policy_writer pw;
        self_->save(pw);
        w.string(policy_name());
        w.string_bytes(pw.bytes());
    }
    //! Reads a record written by save() for a policy of this one's type: a new
    //! policy with the file's hyperparameters. The record must name this policy.
    any_mask load(detail::binary_reader& r) const {
        const std::string name = r.string();
        std::string bytes = r.string_bytes();
        if (!saveable() || name != policy_name())
            detail::fail(r.what() + ": a mask policy '" + name + "' is stored where this optimizer has " +
                         (saveable() ? "'" + std::string(policy_name()) + "'" : "a policy that cannot be saved") +
                         " (set the same policy before loading)");
        policy_reader pr(std::move(bytes), name);
        any_mask out;
        out.self_ = self_->load(pr);
        if (!pr.at_end()) detail::fail(pr.what() + ": load() left bytes of its record unread (corrupt file?)");
        out.validate();
        return out;
    }

    //! The type of the policy (of the active alternative, for a built-in one).
    const std::type_info& type() const { return self_->type(); }
    //! The policy as M, or null when it is not an M.
    template <class M>
    const M* target() const {
        return static_cast<const M*>(self_->target(typeid(M)));
    }
    //! The policy as a mask_mode, when it is a built-in one.
    const mask_mode* as_mask_mode() const { return static_cast<const mask_mode*>(self_->target(typeid(mask_mode))); }
    //! Whether both hold the same policy: equal values where M has ==, else the
    //! same object.
    bool same_policy(const any_mask& other) const { return self_ == other.self_ || self_->equals(*other.self_); }

private:
    struct concept_t {
        virtual ~concept_t() = default;
        virtual void validate() const = 0;
        virtual any_mask_view view(const tensor_info&, std::uint64_t) const = 0;
        virtual void check_tensors(std::span<const tensor_info>, std::span<const tensor_info>) const = 0;
        virtual std::string_view policy_name() const = 0;
        virtual void save(policy_writer&) const = 0;
        virtual std::shared_ptr<const concept_t> load(policy_reader&) const = 0;
        virtual const std::type_info& type() const = 0;
        virtual const void* target(const std::type_info&) const = 0;
        virtual bool equals(const concept_t&) const = 0;
        virtual bool reads_gradients() const { return false; }
        virtual std::shared_ptr<const concept_t> observe(const gradient_reader&, std::uint64_t) const { return nullptr; }
    };
    template <class M>
    struct model final : concept_t {
        M m;
        explicit model(M x) : m(std::move(x)) {}
        void validate() const override { m.validate(); }
        any_mask_view view(const tensor_info& t, std::uint64_t step) const override { return m.view(t, step); }
        void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const override {
            if constexpr (requires { m.check_tensors(users, registered); }) m.check_tensors(users, registered);
        }
        static constexpr bool can_save = requires(policy_writer& w, policy_reader& r) {
            { M::policy_name } -> std::convertible_to<std::string_view>;
            m.save(w);
            { M::load(r) } -> std::same_as<M>;
        };
        std::string_view policy_name() const override {
            if constexpr (can_save) return M::policy_name;
            else return {};
        }
        void save(policy_writer& w) const override {
            if constexpr (can_save) m.save(w);
        }
        std::shared_ptr<const concept_t> load(policy_reader& r) const override {
            if constexpr (can_save) return std::make_shared<const model>(M::load(r));
            else return nullptr;
        }
        bool reads_gradients() const override { return gradient_reading_policy<M>; }
        std::shared_ptr<const concept_t> observe(const gradient_reader& g, std::uint64_t step) const override {
            if constexpr (gradient_reading_policy<M>) return std::make_shared<const model>(m.observe(g, step));
            else return nullptr;
        }
        const std::type_info& type() const override { return typeid(M); }
        const void* target(const std::type_info& t) const override { return t == typeid(M) ? &m : nullptr; }
        bool equals(const concept_t& other) const override {
            if constexpr (std::equality_comparable<M>)
                return other.type() == typeid(M) && *static_cast<const M*>(other.target(typeid(M))) == m;
            else return false;
        }
    };
    //! dense, bernoulli and fixed, in the variant of 0.1 (saved by the state
    //! format's own encodings, not through save()).
    struct builtin_model final : concept_t {
        mask_mode mode;
        explicit builtin_model(mask_mode x) : mode(std::move(x)) {}
        void validate() const override {
            std::visit([](const auto& m) { m.validate(); }, mode);
        }
        any_mask_view view(const tensor_info& t, std::uint64_t step) const override {
            return std::visit([&](const auto& m) { return any_mask_view(m.view(t, step)); }, mode);
        }
        void check_tensors(std::span<const tensor_info> users, std::span<const tensor_info> registered) const override {
            if (const auto* f = std::get_if<fixed>(&mode)) f->check_tensors(users, registered);
        }
        std::string_view policy_name() const override { return {}; }
        void save(policy_writer&) const override {}
        std::shared_ptr<const concept_t> load(policy_reader&) const override { return nullptr; }
        const std::type_info& type() const override {
            return std::visit([](const auto& m) -> const std::type_info& { return typeid(m); }, mode);
        }
        const void* target(const std::type_info& t) const override {
            if (t == typeid(mask_mode)) return &mode;
            return std::visit([&](const auto& m) -> const void* { return t == typeid(m) ? &m : nullptr; }, mode);
        }
        bool equals(const concept_t& other) const override {
            const auto* o = static_cast<const mask_mode*>(other.target(typeid(mask_mode)));
            return o && *o == mode;
        }
    };
    std::shared_ptr<const concept_t> self_;
};

} // namespace childtune
