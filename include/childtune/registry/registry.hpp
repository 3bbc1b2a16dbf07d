#pragma once
//! \file
//! The backend-neutral bookkeeping of an optimizer, written once for every
//! executor: parameter groups and their options and mask policies, tensor
//! names, stable keys, sizes and slices, per-tensor step counts and state
//! layout, the step counter, and every check with its error message.
//!
//! It holds no memory of any backend: the executor binds each registered tensor
//! to memory (host views, device pointers, LibTorch tensors) and keeps its state.
//! Every member that throws leaves the registry as it was.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace childtune::detail {

template <update_rule Rule>
class registry {
public:
    using options_type = typename Rule::options;

    struct group_record {
        std::string name;
        options_type options;
        bool masked = true;             //!< follows the optimizer-wide mask (unless it has its own)
        std::optional<any_mask> own;    //!< a policy of its own
    };
    struct tensor_record {
        std::string name;
        std::size_t group = 0;
        std::uint32_t key = 0;
        dtype type = dtype::float32;
        std::size_t elements = 0;       //!< of the registered view
        std::size_t logical_size = 0;   //!< of the tensor it is a slice of (what masks cover)
        std::size_t offset = 0;         //!< of the view in that tensor
        dtype state_type = dtype::float32;
        std::uint64_t steps = 0;
        bool has_gradient = true;
        std::size_t buffers = 0;        //!< state buffers in use
        //! Compact Child-Tuning_D layout: state for the kept elements only,
        //! kept_before[w] of them before 64-element word w (last entry: the total);
        //! `compact_words`/`compact_hash` identify the mask it was laid out for.
        bool compact = false;
        std::vector<std::uint32_t> kept_before;
        const std::uint64_t* compact_words = nullptr;
        std::uint64_t compact_hash = 0;
        //! 8-bit blockwise state (exec/quantised_state.hpp) instead of float.
        bool quantised = false;
        //! Elements each state buffer holds.
        std::size_t state_elements() const { return compact ? kept_before.back() : elements; }
    };

    explicit registry(optimizer_options options) : options_(options) { validate_optimizer_options(options); }

    const optimizer_options& options() const { return options_; }
    void set_masking(masking_options m) { options_.masking = m; }

    // ---- groups ------------------------------------------------------------------

    std::size_t add_group(std::string name, const options_type& options, bool masked, std::optional<any_mask> own) {
        if (name.empty()) fail("a group name must not be empty");
        if (find_group(name)) fail("group '" + name + "' added twice");
        Rule::validate(options, name);
        if (own) own->validate();
        groups_.push_back({std::move(name), options, masked, std::move(own)});
        return groups_.size() - 1;
    }
    std::size_t group_count() const { return groups_.size(); }
    std::size_t group_index(std::string_view name) const {
        if (auto g = find_group(name)) return *g;
        fail("no group named '" + std::string(name) + "'");
    }
    const group_record& group(std::size_t g) const {
        if (g >= groups_.size())
            fail("group index " + std::to_string(g) + " is out of range (" + std::to_string(groups_.size()) + " groups)");
        return groups_[g];
    }
    const std::vector<group_record>& groups() const { return groups_; }
    void set_group_options(std::size_t g, const options_type& options) {
        Rule::validate(options, group(g).name);
        groups_[g].options = options;
    }
    //! All groups' options at once (a file's), validated before any changes.
    void replace_groups(std::vector<group_record> groups) { groups_ = std::move(groups); }

    // ---- tensors -----------------------------------------------------------------

    //! Checks a registration (everything but its memory) and returns its key.
    std::uint32_t check_new_tensor(std::size_t g, const std::string& name, dtype type, std::size_t elements,
                                   std::size_t logical_size, std::size_t offset, std::optional<std::uint32_t> key) const {
        (void)group(g);
        if (name.empty()) fail("group '" + groups_[g].name + "': a tensor name must not be empty");
        const std::string where = describe(g, name);
        if (find_tensor(name)) fail(where + ": registered twice (the name is taken)");
        if (offset > logical_size || elements > logical_size - offset)
            fail(where + ": a slice of " + std::to_string(elements) + " elements at offset " + std::to_string(offset) +
                 " does not fit in its tensor of " + std::to_string(logical_size) + " elements");
        if (elements != logical_size) {
            if (options_.compact_fixed_state)
                fail(where + ": compact Child-Tuning_D state is kept for whole tensors only, not for a slice of "
                             "one (its kept elements are counted from the tensor's first element)");
            if constexpr (rule_reduction_count<Rule>() > 0)
                fail(where + ": the '" + std::string(Rule::name) +
                     "' rule reduces over whole tensors (its per-tensor phase); a slice of one cannot be registered");
        }
        (void)type;
        const std::uint32_t k = key.value_or(stable_tensor_key(name));
        for (const auto& t : tensors_)
            if (t.key == k) fail(where + ": its Bernoulli key collides with tensor '" + t.name + "'; pass an explicit key");
        if (const any_mask* m = mask_of(g)) // its policy must be able to serve it
            (void)m->view(tensor_info{name, k, g, groups_[g].name, true, logical_size, offset, elements}, step_count_);
        return k;
    }
    std::size_t add_tensor(std::size_t g, std::string name, std::uint32_t key, dtype type, std::size_t elements,
                           std::size_t logical_size, std::size_t offset, bool has_gradient) {
        tensor_record t;
        t.name = std::move(name);
        t.group = g;
        t.key = key;
        t.type = type;
        t.elements = elements;
        t.logical_size = logical_size;
        t.offset = offset;
        t.has_gradient = has_gradient;
        t.state_type = state_type_for(type);
        tensors_.push_back(std::move(t));
        try {
            index_.emplace(tensors_.back().name, tensors_.size() - 1);
        } catch (...) {
            tensors_.pop_back();
            throw;
        }
        return tensors_.size() - 1;
    }
    //! Undoes the last add_tensor (its executor could not bind it).
    void pop_tensor() noexcept {
        index_.erase(tensors_.back().name);
        tensors_.pop_back();
    }
    std::size_t tensor_count() const { return tensors_.size(); }
    const tensor_record& tensor(std::size_t i) const {
        if (i >= tensors_.size())
            fail("tensor index " + std::to_string(i) + " is out of range (" + std::to_string(tensors_.size()) + " tensors)");
        return tensors_[i];
    }
    tensor_record& tensor(std::size_t i) { return const_cast<tensor_record&>(std::as_const(*this).tensor(i)); }
    const std::vector<tensor_record>& tensors() const { return tensors_; }
    std::vector<tensor_record>& tensors() { return tensors_; }
    std::size_t tensor_index(std::string_view name) const {
        auto it = index_.find(std::string(name));
        if (it == index_.end()) fail("no tensor named '" + std::string(name) + "'");
        return it->second;
    }
    const tensor_record* find_tensor(std::string_view name) const {
        auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    //! What mask policies see of tensor i (views into this registry's strings).
    tensor_info info(std::size_t i) const {
        const auto& t = tensors_[i];
        return {t.name, t.key, t.group, groups_[t.group].name, mask_of(t.group) != nullptr, t.logical_size, t.offset,
                t.elements};
    }
    std::string describe(std::size_t g, std::string_view tensor) const {
        return "group '" + groups_[g].name + "', tensor '" + std::string(tensor) + "'";
    }

    // ---- masks ---------------------------------------------------------------------

    //! The optimizer-wide policy: masked groups without a policy of their own use it.
    const any_mask& default_mask() const { return default_; }
    //! The policy group g applies, or null when it trains densely.
    const any_mask* mask_of(std::size_t g) const {
        if (groups_[g].own) return &*groups_[g].own;
        return groups_[g].masked ? &default_ : nullptr;
    }
    //! Replaces the optimizer-wide policy and/or group policies, all checked
    //! against the registered tensors before anything changes.
    void set_masks(any_mask default_mask, std::vector<std::optional<any_mask>> own) {
        std::swap(default_, default_mask);
        for (std::size_t g = 0; g < groups_.size(); ++g) std::swap(groups_[g].own, own[g]);
        try {
            default_.validate();
            for (const auto& g : groups_)
                if (g.own) g.own->validate();
            for (std::size_t i = 0; i < tensors_.size(); ++i)
                if (const any_mask* m = mask_of(tensors_[i].group)) (void)m->view(info(i), step_count_);
        } catch (...) {
            std::swap(default_, default_mask);
            for (std::size_t g = 0; g < groups_.size(); ++g) std::swap(groups_[g].own, own[g]);
            throw;
        }
    }
    //! Puts `next` where the registry holds `old` (the optimizer-wide policy or
    //! a group's own): a gradient-driven policy's value for an applied step.
    void replace_policy(const any_mask* old, any_mask& next) noexcept {
        if (old == &default_) std::swap(default_, next);
        for (auto& g : groups_)
            if (g.own && old == &*g.own) std::swap(*g.own, next);
    }
    //! Sets the optimizer-wide policy without checks (a file being staged,
    //! checked as a whole before it is committed).
    void set_default_mask_unchecked(any_mask m) { default_ = std::move(m); }
    //! Every policy in use must serve exactly the tensors that use it (what a
    //! step checks; registering and setting masks check each tensor alone, as
    //! the parameter set may still be incomplete).
    void check_masks() const {
        std::vector<tensor_info> all;
        all.reserve(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) all.push_back(info(i));
        std::vector<const any_mask*> seen;
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            const any_mask* m = mask_of(g);
            if (!m || std::find(seen.begin(), seen.end(), m) != seen.end()) continue;
            seen.push_back(m);
            std::vector<tensor_info> users;
            for (const auto& t : all)
                if (mask_of(t.group) == m) users.push_back(t);
            m->check_tensors(users, all);
        }
    }

    // ---- steps -----------------------------------------------------------------------

    std::uint64_t step_count() const { return step_count_; }
    void set_step_count(std::uint64_t n) { step_count_ = n; }

private:
    std::optional<std::size_t> find_group(std::string_view name) const {
        for (std::size_t i = 0; i < groups_.size(); ++i)
            if (groups_[i].name == name) return i;
        return std::nullopt;
    }
    dtype state_type_for(dtype param) const {
        if (options_.storage == state_storage::blockwise8) return dtype::float32;
        switch (options_.precision) {
        case state_precision::float32: return dtype::float32;
        case state_precision::float64: return dtype::float64;
        default: return param == dtype::float64 ? dtype::float64 : dtype::float32;
        }
    }

    optimizer_options options_;
    any_mask default_;
    std::vector<group_record> groups_;
    std::vector<tensor_record> tensors_;
    std::unordered_map<std::string, std::size_t> index_;
    std::uint64_t step_count_ = 0;
};

} // namespace childtune::detail
