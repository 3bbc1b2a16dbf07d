#pragma once
//! \file
//! The Child-Tuning optimizer: parameter groups, one fused pass per tensor per
//! step, and a versioned state file from which a run resumes bit-identically.
//!
//! Child-Tuning (Xu et al., "Raise a Child in Large Language Model", EMNLP 2021)
//! updates only a child network: inside the step the gradient is masked, either by
//! a fresh Bernoulli(p) mask (Child-Tuning_F) or by a fixed Fisher-selected mask
//! (Child-Tuning_D). Groups choose whether they are masked: the reference masks
//! the encoder layers and trains embeddings and the task head densely.
//!
//! Every public member either succeeds or throws childtune::error and leaves the
//! optimizer as it was.
//!
//! A tensor may also be registered as a slice of a larger logical tensor
//! (add_parameter_slice): the step is element-wise and every mask decision is a
//! function of the element's index in the logical tensor, so an optimizer per
//! slice updates each element exactly as one optimizer over the whole tensor.
//! This is how the sharded optimizer (distributed/sharded_optimizer.hpp) steps
//! one rank's slice.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/compact_step.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/exec/nonfinite.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/state_format.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/masking.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace childtune {

//! What a step does when a gradient holds NaN or ±Inf.
enum class nonfinite_policy : std::uint8_t {
    raise,     //!< throw childtune::error naming the tensor; nothing is changed
    skip,      //!< change nothing and report the tensor in the step_result
    unchecked, //!< do not scan (saves one read of the gradients per step)
};

//! Precision of the optimizer state.
enum class state_precision : std::uint8_t {
    automatic, //!< double for double parameters, float for all others
    float32,
    float64,
};

struct optimizer_options {
    masking_options masking{};
    nonfinite_policy on_nonfinite = nonfinite_policy::raise;
    state_precision precision = state_precision::automatic;
    //! Under a fixed mask (Child-Tuning_D), keep optimizer state only for the kept
    //! elements of masked tensors: about 8·p_D bytes per parameter instead of 8 for
    //! fp32 AdamW, results bit-identical (exec/compact_step.hpp). Needs a rule whose
    //! masked moments provably stay zero (AdamW with mask_target::gradient and
    //! eps > 0), and the mask may not change once such state exists.
    bool compact_fixed_state = false;
};

//! What step() did.
struct step_result {
    bool applied = true;
    //! When the step was skipped: the first tensor (registration order) whose
    //! gradient held NaN or Inf.
    std::string nonfinite_tensor;
    explicit operator bool() const { return applied; }
};

template <update_rule Rule>
class optimizer {
public:
    using rule_type = Rule;
    using options_type = typename Rule::options;

    explicit optimizer(mask_mode mode = dense{}, optimizer_options options = {}) : options_(options) {
        validate_mode_parameters(mode);
        validate_optimizer_options(options);
        if (options.compact_fixed_state && !supports_compact_state)
            detail::fail("optimizer options: the '" + std::string(Rule::name) +
                         "' rule cannot keep compact Child-Tuning_D state (its masked entries' state need not stay zero)");
        mode_ = std::move(mode);
    }

    // ---- groups ------------------------------------------------------------------

    //! Adds a parameter group and returns its index. `masked` groups are masked by
    //! the mask mode; the others train densely.
    std::size_t add_group(std::string name, const options_type& options, bool masked = true) {
        if (name.empty()) detail::fail("a group name must not be empty");
        if (find_group(name)) detail::fail("group '" + name + "' added twice");
        Rule::validate(options, name);
        groups_.push_back({std::move(name), options, masked});
        return groups_.size() - 1;
    }
    std::size_t group_count() const { return groups_.size(); }
    //! Index of the group called `name`, or an error.
    std::size_t group_index(std::string_view name) const {
        if (auto g = find_group(name)) return *g;
        detail::fail("no group named '" + std::string(name) + "'");
    }
    const std::string& group_name(std::size_t group) const { return checked_group(group).name; }
    bool group_masked(std::size_t group) const { return checked_group(group).masked; }
    const options_type& group_options(std::size_t group) const { return checked_group(group).options; }
    //! Replaces a group's hyperparameters between steps (schedulers use set_lr).
    void set_group_options(std::size_t group, const options_type& options) {
        auto& g = checked_group(group);
        Rule::validate(options, g.name);
        g.options = options;
    }
    void set_lr(std::size_t group, double lr) {
        options_type o = group_options(group);
        o.lr = lr;
        set_group_options(group, o);
    }
    //! Sets the learning rate of every group (validated for all before any changes).
    void set_lr(double lr) {
        for (const auto& g : groups_) {
            options_type o = g.options;
            o.lr = lr;
            Rule::validate(o, g.name);
        }
        for (auto& g : groups_) g.options.lr = lr;
    }

    // ---- parameters -----------------------------------------------------------------

    //! Registers a parameter and its gradient buffer. The optimizer keeps views:
    //! both buffers must outlive it (or be rebound with rebind()). `key` overrides
    //! the Bernoulli tensor key derived from the name.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        register_parameter(group, std::move(name), param, grad, key, true, {param.size(), 0});
    }
    //! Registers a parameter whose gradient does not exist yet (frameworks that
    //! allocate gradients lazily): steps skip it until rebind() supplies one.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param,
                       std::optional<std::uint32_t> key = std::nullopt) {
        register_parameter(group, std::move(name), param, tensor_view<const T>(nullptr, param.size()), key, false,
                           {param.size(), 0});
    }
    //! Convenience for contiguous containers (std::vector, std::array, std::span).
    template <contiguous_tensor P, contiguous_tensor G>
    void add_parameter(std::size_t group, std::string name, P& param, const G& grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        using T = std::ranges::range_value_t<P>;
        static_assert(std::is_same_v<T, std::ranges::range_value_t<G>>,
                      "a parameter and its gradient must have the same element type");
        add_parameter<T>(group, std::move(name), tensor_view<T>(param), tensor_view<const T>(grad), key);
    }
    //! Registers elements [offset, offset + param.size()) of a logical tensor of
    //! `logical_size` elements; `param` and `grad` start at the slice's first
    //! element. Its masks are the logical tensor's, read at `offset`: the fixed
    //! mask of `name` must have `logical_size` bits, and the Bernoulli draws are
    //! those of element offset + i. So optimizers that each hold one slice of a
    //! tensor (under its name and key) update it bit for bit as one optimizer
    //! over the whole tensor. An empty slice (a rank whose share misses the
    //! tensor) is allowed, so that every holder registers the same tensors, keys
    //! and mask coverage. Compact Child-Tuning_D state needs whole tensors: it
    //! indexes the kept elements from the tensor's first mask word.
    template <parameter_element T>
    void add_parameter_slice(std::size_t group, std::string name, std::size_t logical_size, std::size_t offset,
                             tensor_view<T> param, tensor_view<const T> grad,
                             std::optional<std::uint32_t> key = std::nullopt) {
        register_parameter(group, std::move(name), param, grad, key, true, {logical_size, offset});
    }
    //! Points a registered tensor at new memory (same size and type), e.g. after
    //! the model reallocated it, and marks its gradient present. The optimizer
    //! state is kept.
    template <parameter_element T>
    void rebind(std::string_view name, tensor_view<T> param, tensor_view<const T> grad) {
        rebind(tensor_index(name), param, grad);
    }
    //! The same by registration index (frameworks that rebind every step skip the
    //! name lookup).
    template <parameter_element T>
    void rebind(std::size_t index, tensor_view<T> param, tensor_view<const T> grad) {
        auto& t = checked_tensor(index);
        const std::string where = describe(t.group, t.name);
        if (dtype_of<T> != t.param.type)
            detail::fail(where + ": cannot rebind a " + std::string(dtype_name(t.param.type)) + " tensor to " +
                         std::string(dtype_name(dtype_of<T>)) + " memory");
        if (param.size() != t.param.size)
            detail::fail(where + ": cannot rebind " + std::to_string(t.param.size) + " elements to " +
                         std::to_string(param.size()));
        check_buffers(where, param, grad, &t);
        if (grad.size() > 0 && !grad.data()) detail::fail(where + ": null gradient data pointer");
        t.param = param;
        t.grad = grad;
        t.has_gradient = true;
    }
    //! Marks a tensor's gradient absent: steps skip it (no update, no decay, its
    //! state and step count unchanged), as LibTorch's optimizers skip parameters
    //! whose `grad()` is undefined. rebind() makes it present again.
    void clear_gradient(std::size_t index) { checked_tensor(index).has_gradient = false; }
    bool has_gradient(std::size_t index) const { return const_cast<optimizer*>(this)->checked_tensor(index).has_gradient; }
    //! Registration index of the tensor called `name`, or an error.
    std::size_t tensor_index(std::string_view name) const {
        auto it = tensor_index_.find(std::string(name));
        if (it == tensor_index_.end()) detail::fail("no tensor named '" + std::string(name) + "'");
        return it->second;
    }
    std::size_t tensor_count() const { return tensors_.size(); }
    std::vector<std::string> tensor_names() const {
        std::vector<std::string> names;
        for (const auto& t : tensors_) names.push_back(t.name);
        return names;
    }

    // ---- mask ------------------------------------------------------------------------

    const mask_mode& mask() const { return mode_; }
    //! Switches the mask mode (e.g. to Child-Tuning_D once the Fisher mask exists).
    //! Releases state reserved by reserve_state() (it was sized for the old mask).
    void set_mask(mask_mode mode) {
        validate_mode_parameters(mode);
        if (const auto* f = std::get_if<fixed>(&mode))
            for (const auto& t : tensors_)
                if (groups_[t.group].masked) (void)f->view(t.name, t.logical_size);
        check_compact_state_kept(mode);
        mode_ = std::move(mode);
        release_reserved_state();
    }
    const optimizer_options& options() const { return options_; }

    // ---- stepping ----------------------------------------------------------------------

    //! Number of steps applied so far; step t (0-based) draws its Bernoulli mask
    //! with counter word 3 = t.
    std::uint64_t step_count() const { return step_count_; }

    //! One optimizer step over every registered tensor.
    template <execution_backend E = default_backend>
    step_result step(const E& exec = E{}) {
        std::vector<job> jobs = prepare_jobs(); // validates; nothing has changed yet

        if (options_.on_nonfinite != nonfinite_policy::unchecked) {
            if (auto bad = first_nonfinite_gradient(exec)) {
                const auto& t = tensors_[*bad];
                if (options_.on_nonfinite == nonfinite_policy::raise)
                    detail::fail(describe(t.group, t.name) + ": gradient holds NaN or Inf (step skipped)");
                return {false, t.name};
            }
        }

        std::vector<state_allocation> fresh = allocate_state(jobs);
        adopt_state(fresh);
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            if (!t.has_gradient) continue;
            const bool fresh_state = t.buffers < jobs[i].buffers;
            t.buffers = std::max(t.buffers, jobs[i].buffers);
            finish_job(jobs[i], t, fresh_state);
        }

        const auto items = work_items();
        run_items(exec, items, [&](std::size_t w) {
            const auto& it = items[w];
            jobs[it.tensor].run(jobs[it.tensor], it.begin, it.end);
        });

        for (auto& t : tensors_)
            if (t.has_gradient) ++t.steps;
        ++step_count_;
        return {};
    }

    //! Validates what the next step() validates and allocates, all or nothing, the
    //! optimizer state it would allocate for the current groups, options and mask,
    //! so that the step then allocates no state (only its small per-step
    //! bookkeeping). Running out of memory then shows at set-up instead of at
    //! step 1, and a distributed step can agree on every rank that allocation
    //! succeeded before any rank changes a parameter. Reserved state counts in
    //! state_bytes(); it is not saved until a step has used it (so reserving
    //! changes neither results nor state files), and set_mask() and load()
    //! release it.
    void reserve_state() {
        std::vector<state_allocation> reserved = allocate_state(prepare_jobs());
        keep_reserved(reserved);
    }

    //! Index of the first tensor (registration order) whose present gradient holds
    //! NaN or Inf: the check step() makes under nonfinite_policy::raise and skip,
    //! for callers that must decide before stepping (a distributed step agrees on
    //! it across ranks and steps with nonfinite_policy::unchecked).
    template <execution_backend E = default_backend>
    std::optional<std::size_t> first_nonfinite_gradient(const E& exec = E{}) const {
        const auto items = work_items();
        std::vector<unsigned char> bad(items.size(), 0);
        run_items(exec, items, [&](std::size_t w) {
            const auto& it = items[w];
            const auto& g = tensors_[it.tensor].grad;
            const std::size_t n = it.end - it.begin;
            bool ok = true;
            switch (g.type) {
            case dtype::float32: ok = detail::all_finite(static_cast<const float*>(g.data) + it.begin, n); break;
            case dtype::float64: ok = detail::all_finite(static_cast<const double*>(g.data) + it.begin, n); break;
            case dtype::bfloat16: ok = detail::all_finite(static_cast<const bfloat16*>(g.data) + it.begin, n); break;
            case dtype::float16: ok = detail::all_finite(static_cast<const float16*>(g.data) + it.begin, n); break;
            }
            bad[w] = ok ? 0 : 1;
        });
        for (std::size_t w = 0; w < items.size(); ++w)
            if (bad[w]) return items[w].tensor;
        return std::nullopt;
    }

    //! Bytes of optimizer state currently allocated (moments, momentum buffers).
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& t : tensors_) n += t.state[0].size() + t.state[1].size();
        return n;
    }

    // ---- state file ---------------------------------------------------------------------

    //! Writes everything a resumed run needs: step counters, mask mode (with the
    //! Bernoulli seed or the fixed bits), masking options, group options and state.
    //! A slice is written as a tensor of its own elements, with neither offset nor
    //! logical size, so files of ordinary registrations keep their format: whoever
    //! registers slices keeps the layout in a header of its own
    //! (sharded_optimizer's per-rank files do), and load() checks the slice's size.
    void save(std::ostream& out) const {
        detail::binary_writer w(out);
        detail::write_state_preamble(w, Rule::name, {step_count_, mode_, options_.masking});
        detail::write_state_groups<Rule>(w, groups_);
        w.value<std::uint64_t>(tensors_.size());
        for (const auto& t : tensors_) {
            detail::write_state_tensor(w, state_record(t, t.steps, t.buffers, t.compact && t.buffers > 0));
            for (std::size_t b = 0; b < t.buffers; ++b) write_state(w, t.state_type, t.state[b]);
        }
        w.finish();
    }

    //! Restores a state written by save() for the same parameter set: same rule,
    //! groups (by name, in order) and tensors (by name, size and type). Group
    //! options, mask mode and masking options are restored; the parameter and
    //! gradient memory stays the caller's. Throws childtune::error on a truncated,
    //! corrupt, foreign or mismatched file and then changes nothing. Releases
    //! state reserved by reserve_state().
    void load(std::istream& in) {
        detail::binary_reader r(in, "optimizer state");
        detail::state_preamble preamble = detail::read_state_preamble(r, Rule::name);
        mask_mode& mode = preamble.mode;
        std::vector<group_record> groups = detail::read_state_groups<Rule>(r, groups_);
        detail::check_state_tensor_count(r, tensors_.size());
        struct loaded {
            std::uint64_t steps;
            std::size_t buffers;
            std::vector<std::byte> state[2];
            bool compact = false;
            std::vector<std::uint32_t> kept_before;
        };
        std::vector<loaded> staged(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            const auto record = detail::read_state_tensor(r, state_record(t, 0, 0, false), Rule::max_state_buffers);
            auto& s = staged[i];
            s.steps = record.steps;
            s.buffers = record.buffers;
            s.compact = record.compact;
            if (s.compact && !supports_compact_state)
                detail::fail("optimizer state, tensor '" + t.name + "': compact state, which the '" + std::string(Rule::name) +
                             "' rule cannot keep (corrupt file)");
            if (s.compact && t.param.size != t.logical_size)
                detail::fail("optimizer state, tensor '" + t.name +
                             "': compact state for a slice of a tensor (only whole tensors keep compact state)");
            std::size_t elements = t.param.size;
            if (s.compact) { // state for the kept elements of the file's own fixed mask
                const auto* f = std::get_if<fixed>(&mode);
                const bit_mask* m = f ? f->masks.find(t.name) : nullptr;
                if (!m || m->size() != t.param.size)
                    detail::fail("optimizer state, tensor '" + t.name + "': compact state without its fixed mask (corrupt file)");
                s.kept_before = kept_before(m->words().data(), t.param.size);
                elements = s.kept_before.back();
            }
            for (std::size_t b = 0; b < s.buffers; ++b) {
                s.state[b].resize(elements * state_size(t.state_type));
                read_state(r, t.state_type, s.state[b]);
            }
        }
        r.finish();
        if (const auto* f = std::get_if<fixed>(&mode))
            for (std::size_t i = 0; i < tensors_.size(); ++i)
                if (groups[tensors_[i].group].masked) (void)f->view(tensors_[i].name, tensors_[i].logical_size);

        // Commit: nothing below throws.
        step_count_ = preamble.steps;
        mode_ = std::move(mode);
        options_.masking = preamble.masking;
        groups_ = std::move(groups);
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            t.steps = staged[i].steps;
            t.buffers = staged[i].buffers;
            for (std::size_t b = 0; b < 2; ++b) t.state[b] = std::move(staged[i].state[b]);
            t.compact = staged[i].compact;
            t.kept_before = std::move(staged[i].kept_before);
            t.reserved_kept_before = std::vector<std::uint32_t>();
        }
    }

    //! Saves to `path` crash-safely: a kill or a full disk mid-save leaves the
    //! previous checkpoint whole (io/atomic_file.hpp).
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "optimizer state", [&](std::ostream& out) { save(out); });
    }
    void load(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) detail::fail("cannot open optimizer state '" + path + "'");
        load(in);
    }

private:
    //! Work items cover at most this many elements (a multiple of 64, so keep
    //! words stay aligned to the view's start): small enough to balance threads,
    //! large enough that scheduling costs nothing.
    static constexpr std::size_t chunk_elements = std::size_t{1} << 16;
    static constexpr std::size_t parallel_min_elements = std::size_t{1} << 17;

    struct group_record {
        std::string name;
        options_type options;
        bool masked;
    };
    //! Where a registered view lies in its logical tensor (add_parameter_slice);
    //! an ordinary registration is the whole tensor: {param.size, 0}.
    struct slice_extent {
        std::size_t logical_size = 0;
        std::size_t offset = 0;
    };
    struct tensor_record {
        std::string name;
        std::size_t group = 0;
        std::uint32_t key = 0;
        any_tensor_view param; //!< elements [offset, offset + param.size) of the logical tensor
        any_tensor_view grad;
        std::size_t logical_size = 0; //!< what its masks cover
        std::size_t offset = 0;
        dtype state_type = dtype::float32;
        std::uint64_t steps = 0;
        bool has_gradient = true;
        //! State buffers in use; state[b] for b >= buffers is empty or reserved
        //! (zeros of the size the next step needs, from reserve_state()).
        std::size_t buffers = 0;
        //! Compact Child-Tuning_D state: the buffers hold the kept elements only,
        //! kept_before[w] of them before 64-element word w (one extra entry: the total).
        bool compact = false;
        std::vector<std::uint32_t> kept_before;
        //! kept_before of a first compact step, computed by reserve_state().
        std::vector<std::uint32_t> reserved_kept_before;
        std::vector<std::byte> state[2];
    };
    //! State that a tensor's next step needs and it does not hold yet: allocated,
    //! not yet handed over (the all-or-nothing half of allocating).
    struct state_allocation {
        std::size_t tensor = 0;
        bool compacting = false; //!< its first step under compact Child-Tuning_D state
        //! When compacting: its kept_before (empty: the tensor's reserved one).
        std::vector<std::uint32_t> kept_before;
        bool allocated[2] = {false, false}; //!< false: the tensor's reserved buffer fits
        std::vector<std::byte> state[2];
    };
    using any_mask_view = std::variant<dense_view, bernoulli_view, fixed_view>;
    //! Everything one tensor's work items need, resolved before the parallel loop.
    struct job {
        any_mask_view mask;
        std::size_t buffers = 0;
        typename Rule::template step_constants<float> constants_f{};
        typename Rule::template step_constants<double> constants_d{};
        void (*run)(const job&, std::size_t, std::size_t) = nullptr;
        void* param = nullptr;
        const void* grad = nullptr;
        void* state[2] = {nullptr, nullptr};
        masking_options masking;
        bool compact = false;                     //!< state holds the kept elements only
        const std::uint64_t* compact_words = nullptr;
        const std::uint32_t* kept_before = nullptr;
    };
    struct work_item {
        std::size_t tensor, begin, end;
    };

    template <class P, class S, class MaskView>
    static void run_job(const job& j, std::size_t begin, std::size_t end) {
        const auto& c = [&]() -> const auto& {
            if constexpr (std::is_same_v<S, float>) return j.constants_f;
            else return j.constants_d;
        }();
        detail::step_operands<P, S> x{static_cast<P*>(j.param), static_cast<const P*>(j.grad),
                                      {static_cast<S*>(j.state[0]), static_cast<S*>(j.state[1])}};
        detail::cpu_step_range<Rule, S, P>(c, j.masking, std::get<MaskView>(j.mask), x, j.buffers, begin, end);
    }
    template <class P, class S>
    static void run_compact_job(const job& j, std::size_t begin, std::size_t end) {
        const auto& c = [&]() -> const auto& {
            if constexpr (std::is_same_v<S, float>) return j.constants_f;
            else return j.constants_d;
        }();
        detail::step_operands<P, S> x{static_cast<P*>(j.param), static_cast<const P*>(j.grad),
                                      {static_cast<S*>(j.state[0]), static_cast<S*>(j.state[1])}};
        if constexpr (supports_compact_state)
            detail::cpu_compact_step_range<Rule, S, P>(c, j.masking, j.compact_words, j.kept_before, x, begin, end);
    }
    template <class P, class S>
    static auto pick_runner(const any_mask_view& mask) {
        return std::visit([](const auto& v) { return &run_job<P, S, std::decay_t<decltype(v)>>; }, mask);
    }
    template <class P>
    static auto pick_runner(dtype state, const any_mask_view& mask, bool compact) {
        using runner = void (*)(const job&, std::size_t, std::size_t);
        if (compact) return state == dtype::float64 ? runner{&run_compact_job<P, double>} : runner{&run_compact_job<P, float>};
        return state == dtype::float64 ? runner{pick_runner<P, double>(mask)} : runner{pick_runner<P, float>(mask)};
    }

    template <class T>
    void register_parameter(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                            std::optional<std::uint32_t> key, bool gradient_present, slice_extent slice) {
        checked_group(group);
        if (name.empty()) detail::fail("group '" + groups_[group].name + "': a tensor name must not be empty");
        const std::string where = describe(group, name);
        if (find_tensor(name)) detail::fail(where + ": registered twice (the name is taken)");
        check_buffers(where, param, grad, nullptr);
        check_slice(where, slice, param.size());
        if (gradient_present && grad.size() > 0 && !grad.data()) detail::fail(where + ": null gradient data pointer");
        const std::uint32_t k = key.value_or(stable_tensor_key(name));
        for (const auto& t : tensors_)
            if (t.key == k)
                detail::fail(where + ": its Bernoulli key collides with tensor '" + t.name + "'; pass an explicit key");
        if (groups_[group].masked)
            if (const auto* f = std::get_if<fixed>(&mode_)) (void)f->view(name, slice.logical_size);

        tensor_record t;
        t.name = std::move(name);
        t.group = group;
        t.key = k;
        t.param = param;
        t.grad = grad;
        t.logical_size = slice.logical_size;
        t.offset = slice.offset;
        t.has_gradient = gradient_present;
        t.state_type = state_type_for(dtype_of<T>);
        tensors_.push_back(std::move(t));
        try {
            tensor_index_.emplace(tensors_.back().name, tensors_.size() - 1);
        } catch (...) {
            tensors_.pop_back();
            throw;
        }
    }
    //! The slice must lie inside its logical tensor; compact state (whose kept
    //! elements are counted from the tensor's first mask word) needs it whole.
    void check_slice(const std::string& where, slice_extent slice, std::size_t elements) const {
        if (slice.offset > slice.logical_size || elements > slice.logical_size - slice.offset)
            detail::fail(where + ": a slice of " + std::to_string(elements) + " elements at offset " +
                         std::to_string(slice.offset) + " does not fit in its tensor of " +
                         std::to_string(slice.logical_size) + " elements");
        if (options_.compact_fixed_state && elements != slice.logical_size)
            detail::fail(where + ": compact Child-Tuning_D state is kept for whole tensors only, not for a slice of "
                                 "one (its kept elements are counted from the tensor's first element)");
    }

    //! Validates and resolves mask views and state needs; changes nothing.
    std::vector<job> prepare_jobs() const {
        if (const auto* f = std::get_if<fixed>(&mode_)) check_mask_covers(*f);
        std::vector<job> jobs(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            auto& j = jobs[i];
            const bool masked = groups_[t.group].masked;
            // A slice reads its logical tensor's masks at its offset.
            j.mask = !masked ? any_mask_view{dense_view{}}
                             : std::visit(
                                   [&](const auto& m) -> any_mask_view {
                                       using M = std::decay_t<decltype(m)>;
                                       if constexpr (std::is_same_v<M, fixed>) return m.view(t.name, t.logical_size, t.offset);
                                       else return m.view(t.key, step_count_, t.offset);
                                   },
                                   mode_);
            j.buffers = Rule::state_buffers(groups_[t.group].options);
            j.masking = options_.masking;
            // A tensor is compacted at its first step under the fixed mask; one that
            // already holds full state keeps it (the results are the same). One that
            // holds compact state (e.g. loaded from a file) steps compactly whatever
            // this optimizer's option says: the full-state kernel would index past it.
            if (const auto* f = std::get_if<fixed>(&mode_);
                f && masked && (t.compact || (options_.compact_fixed_state && t.buffers == 0))) {
                check_compact_exact(t.group);
                j.compact = true;
                j.compact_words = f->masks.find(t.name)->words().data();
            }
            switch (t.param.type) {
            case dtype::float32: j.run = pick_runner<float>(t.state_type, j.mask, j.compact); break;
            case dtype::float64: j.run = pick_runner<double>(t.state_type, j.mask, j.compact); break;
            case dtype::bfloat16: j.run = pick_runner<bfloat16>(t.state_type, j.mask, j.compact); break;
            case dtype::float16: j.run = pick_runner<float16>(t.state_type, j.mask, j.compact); break;
            }
        }
        return jobs;
    }
    //! Allocates the state the jobs need that their tensors neither hold nor have
    //! reserved; changes nothing.
    std::vector<state_allocation> allocate_state(const std::vector<job>& jobs) const {
        std::vector<state_allocation> out;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            if (!t.has_gradient || t.buffers >= jobs[i].buffers) continue;
            state_allocation a;
            a.tensor = i;
            std::size_t elements = t.param.size;
            if (t.buffers == 0 && jobs[i].compact) {
                a.compacting = true;
                if (t.reserved_kept_before.empty()) a.kept_before = kept_before(jobs[i].compact_words, t.param.size);
                elements = (a.kept_before.empty() ? t.reserved_kept_before : a.kept_before).back();
            } else if (t.compact) {
                elements = t.kept_before.back();
            }
            // A reserved buffer is zeros, as a new one: it serves when its size fits.
            const std::size_t bytes = elements * state_size(t.state_type);
            for (std::size_t b = t.buffers; b < jobs[i].buffers; ++b)
                if (t.state[b].size() != bytes) {
                    a.allocated[b] = true;
                    a.state[b] = std::vector<std::byte>(bytes);
                }
            out.push_back(std::move(a));
        }
        return out;
    }
    //! Hands allocated state to its tensors for the step about to run.
    void adopt_state(std::vector<state_allocation>& fresh) noexcept {
        for (auto& a : fresh) {
            auto& t = tensors_[a.tensor];
            for (std::size_t b = 0; b < 2; ++b)
                if (a.allocated[b]) t.state[b] = std::move(a.state[b]);
            if (a.compacting) {
                t.compact = true;
                t.kept_before = a.kept_before.empty() ? std::move(t.reserved_kept_before) : std::move(a.kept_before);
            }
            t.reserved_kept_before = std::vector<std::uint32_t>();
        }
    }
    //! Keeps allocated state as the tensors' reserved state (reserve_state()).
    void keep_reserved(std::vector<state_allocation>& reserved) noexcept {
        for (auto& a : reserved) {
            auto& t = tensors_[a.tensor];
            for (std::size_t b = 0; b < 2; ++b)
                if (a.allocated[b]) t.state[b] = std::move(a.state[b]);
            if (!a.kept_before.empty()) t.reserved_kept_before = std::move(a.kept_before);
        }
    }
    //! Frees reserved state (sized for the mask it was reserved under).
    void release_reserved_state() noexcept {
        for (auto& t : tensors_) {
            for (std::size_t b = t.buffers; b < 2; ++b) t.state[b] = std::vector<std::byte>();
            t.reserved_kept_before = std::vector<std::uint32_t>();
        }
    }
    //! Fills in what depends on the (possibly just allocated) state.
    void finish_job(job& j, tensor_record& t, bool fresh_state) const {
        const auto& o = groups_[t.group].options;
        if (t.state_type == dtype::float64) j.constants_d = Rule::template prepare<double>(o, t.steps + 1, fresh_state);
        else j.constants_f = Rule::template prepare<float>(o, t.steps + 1, fresh_state);
        j.param = t.param.data;
        j.grad = t.grad.data;
        j.state[0] = t.state[0].empty() ? nullptr : t.state[0].data();
        j.state[1] = t.state[1].empty() ? nullptr : t.state[1].data();
        j.kept_before = t.kept_before.data();
    }

    //! The ranges of at most chunk_elements of every tensor whose gradient is present.
    std::vector<work_item> work_items() const {
        std::vector<work_item> items;
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            if (tensors_[i].has_gradient)
                for (std::size_t b = 0; b < tensors_[i].param.size; b += chunk_elements)
                    items.push_back({i, b, std::min(tensors_[i].param.size, b + chunk_elements)});
        return items;
    }

    //! Runs the work items on `exec`, or on the calling thread when they hold too
    //! few elements to pay for waking a thread team (small models would otherwise
    //! spend their step in fork/join, and fight the model's own threads).
    template <class E, class F>
    static void run_items(const E& exec, const std::vector<work_item>& items, F&& f) {
        std::size_t elements = 0;
        for (const auto& it : items) elements += it.end - it.begin;
        if (elements < parallel_min_elements) serial_backend{}.parallel_for(items.size(), f);
        else exec.parallel_for(items.size(), f);
    }

    static constexpr bool supports_compact_state =
        requires(const options_type& o, masking_options m) { { Rule::compact_state_exact(o, m) } -> std::convertible_to<bool>; };

    void check_compact_exact(std::size_t group) const {
        if constexpr (supports_compact_state) {
            if (!Rule::compact_state_exact(groups_[group].options, options_.masking))
                detail::fail("group '" + groups_[group].name +
                             "': compact Child-Tuning_D state needs the mask on the gradient and eps > 0 "
                             "(otherwise masked entries' state or updates are not zero)");
        }
    }
    //! Kept elements before each 64-element word of a mask over n elements, and
    //! the total as the last entry.
    static std::vector<std::uint32_t> kept_before(const std::uint64_t* words, std::size_t n) {
        const std::size_t count = (n + 63) / 64;
        if (n > std::size_t{0xFFFFFFFFu}) detail::fail("compact state: a tensor of " + std::to_string(n) + " elements is too large");
        std::vector<std::uint32_t> prefix(count + 1, 0);
        for (std::size_t w = 0; w < count; ++w)
            prefix[w + 1] = prefix[w] + static_cast<std::uint32_t>(std::popcount(words[w]));
        return prefix;
    }
    //! Compact state holds no moments for masked-out elements, so once it exists the
    //! mask of its tensor may not change.
    void check_compact_state_kept(const mask_mode& next) const {
        for (const auto& t : tensors_) {
            if (!t.compact || t.buffers == 0) continue;
            const auto* now = std::get_if<fixed>(&mode_);
            const auto* then = std::get_if<fixed>(&next);
            const bit_mask* a = now ? now->masks.find(t.name) : nullptr;
            const bit_mask* b = then ? then->masks.find(t.name) : nullptr;
            if (!a || !b || !(*a == *b))
                detail::fail("tensor '" + t.name + "' keeps compact Child-Tuning_D state for its current mask; "
                             "the mask cannot change (the moments of newly kept elements were never stored)");
        }
    }

    //! A fixed mask must cover exactly the masked tensors, each with its size.
    void check_mask_covers(const fixed& f) const {
        std::size_t covered = 0;
        for (const auto& t : tensors_)
            if (groups_[t.group].masked) {
                (void)f.view(t.name, t.logical_size);
                ++covered;
            }
        if (covered != f.masks.tensor_count())
            for (const auto& e : f.masks.entries()) {
                const auto* t = find_tensor(e.name);
                if (!t) detail::fail("fixed mask: tensor '" + e.name + "' is not registered (mask built for a different parameter set?)");
                if (!groups_[t->group].masked)
                    detail::fail("fixed mask: tensor '" + e.name + "' is in unmasked group '" + groups_[t->group].name + "'");
            }
    }

    template <class T>
    void check_buffers(const std::string& where, tensor_view<T> param, tensor_view<const T> grad,
                       const tensor_record* self) const {
        if (param.size() != grad.size())
            detail::fail(where + ": gradient has " + std::to_string(grad.size()) + " elements, parameter has " +
                         std::to_string(param.size()));
        if (param.size() == 0) return;
        // Checked first: the byte counts below (and the state buffers a step
        // allocates) would wrap for a larger size.
        if (param.size() > detail::max_tensor_elements<T>)
            detail::fail(where + ": " + std::to_string(param.size()) + " elements of " +
                         std::string(dtype_name(dtype_of<std::remove_const_t<T>>)) +
                         " exceed the address space (corrupt or made-up size)");
        if (!param.data()) detail::fail(where + ": null parameter data pointer");
        const auto bytes = param.size() * sizeof(T);
        // Aliasing param and grad would make the step read gradients it has
        // already overwritten with parameters (in an order that depends on the
        // thread count); null only while the gradient is absent.
        if (grad.data() && detail::ranges_overlap(param.data(), bytes, grad.data(), bytes))
            detail::fail(where + ": parameter and gradient memory overlap");
        for (const auto& t : tensors_) {
            if (&t == self || t.param.size == 0) continue;
            const auto other = t.param.size * dtype_bytes(t.param.type);
            if (detail::ranges_overlap(param.data(), bytes, t.param.data, other))
                detail::fail(where + ": parameter memory overlaps tensor '" + t.name + "' (registered twice?)");
            // A gradient inside another tensor's parameter changes while the step
            // writes that parameter.
            if (grad.data() && detail::ranges_overlap(grad.data(), bytes, t.param.data, other))
                detail::fail(where + ": gradient memory overlaps the parameter of tensor '" + t.name + "'");
        }
    }

    void validate_mode_parameters(const mask_mode& mode) const {
        std::visit([](const auto& m) { m.validate(); }, mode);
    }
    static void validate_optimizer_options(const optimizer_options& o) {
        if (o.masking.target != mask_target::gradient && o.masking.target != mask_target::update)
            detail::fail("optimizer options: unknown mask target");
        if (o.on_nonfinite > nonfinite_policy::unchecked) detail::fail("optimizer options: unknown nonfinite policy");
        if (o.precision > state_precision::float64) detail::fail("optimizer options: unknown state precision");
    }
    dtype state_type_for(dtype param) const {
        switch (options_.precision) {
        case state_precision::float32: return dtype::float32;
        case state_precision::float64: return dtype::float64;
        default: return param == dtype::float64 ? dtype::float64 : dtype::float32;
        }
    }
    static std::size_t state_size(dtype t) { return t == dtype::float64 ? 8 : 4; }
    static std::size_t dtype_bytes(dtype t) {
        switch (t) {
        case dtype::float32: return 4;
        case dtype::float64: return 8;
        default: return 2;
        }
    }

    std::optional<std::size_t> find_group(std::string_view name) const {
        for (std::size_t i = 0; i < groups_.size(); ++i)
            if (groups_[i].name == name) return i;
        return std::nullopt;
    }
    const tensor_record* find_tensor(std::string_view name) const {
        auto it = tensor_index_.find(std::string(name));
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    tensor_record& checked_tensor(std::size_t index) {
        if (index >= tensors_.size())
            detail::fail("tensor index " + std::to_string(index) + " is out of range (" + std::to_string(tensors_.size()) +
                         " tensors)");
        return tensors_[index];
    }
    group_record& checked_group(std::size_t group) {
        if (group >= groups_.size())
            detail::fail("group index " + std::to_string(group) + " is out of range (" + std::to_string(groups_.size()) + " groups)");
        return groups_[group];
    }
    const group_record& checked_group(std::size_t group) const { return const_cast<optimizer*>(this)->checked_group(group); }
    std::string describe(std::size_t group, std::string_view tensor) const {
        return "group '" + groups_[group].name + "', tensor '" + std::string(tensor) + "'";
    }

    static detail::state_tensor_record state_record(const tensor_record& t, std::uint64_t steps, std::size_t buffers,
                                                    bool compact) {
        return {t.name, t.group, t.key, t.param.type, t.param.size, t.state_type, steps, buffers, compact};
    }
    static void write_state(detail::binary_writer& w, dtype type, const std::vector<std::byte>& s) {
        if (type == dtype::float64)
            w.array(std::span<const double>(reinterpret_cast<const double*>(s.data()), s.size() / 8));
        else
            w.array(std::span<const float>(reinterpret_cast<const float*>(s.data()), s.size() / 4));
    }
    static void read_state(detail::binary_reader& r, dtype type, std::vector<std::byte>& s) {
        if (type == dtype::float64) r.array_into(std::span<double>(reinterpret_cast<double*>(s.data()), s.size() / 8));
        else r.array_into(std::span<float>(reinterpret_cast<float*>(s.data()), s.size() / 4));
    }

    optimizer_options options_;
    mask_mode mode_;
    std::vector<group_record> groups_;
    std::vector<tensor_record> tensors_;
    std::unordered_map<std::string, std::size_t> tensor_index_;
    std::uint64_t step_count_ = 0;
};

} // namespace childtune
