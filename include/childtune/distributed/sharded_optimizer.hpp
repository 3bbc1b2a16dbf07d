#pragma once
//! \file
//! Data-parallel Child-Tuning with sharded optimizer state (ZeRO stage 1,
//! Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
//! Parameter Models", SC 2020).
//!
//! Every rank holds all parameters and the same (already all-reduced) gradients.
//! Rank r owns the optimizer state of one contiguous slice of the flattened
//! parameters (distributed/shard.hpp), steps only that slice, and the updated
//! slices are then all-gathered, so each rank ends the step with every parameter.
//!
//! The result is bit-identical to childtune::optimizer in one process, for every
//! world size: the step is element-wise, and each element here sees the same
//! arithmetic (the core's fused kernel, exec/cpu_step.hpp), the same per-tensor
//! step constants (Rule::prepare with the tensor's step count), the same
//! Child-Tuning_F decision (the keyed Bernoulli view at the slice's element
//! offset) and the same Child-Tuning_D bit (the fixed view at that offset).
//! Nothing per tensor depends on the slicing.
//!
//! Collective members (step, save, load) must be called by every rank in the
//! same order. They fail on every rank together: a check that fails on one rank
//! is agreed on before anything changes, so no rank is left waiting in a
//! collective the others abandoned.

#include <childtune/concepts.hpp>
#include <childtune/distributed/communicator.hpp>
#include <childtune/distributed/shard.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/exec/nonfinite.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/state_format.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <istream>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace childtune {

template <update_rule Rule, communicator Comm>
class sharded_optimizer {
public:
    using rule_type = Rule;
    using options_type = typename Rule::options;

    //! `comm` must outlive the optimizer. Compact Child-Tuning_D state
    //! (optimizer_options::compact_fixed_state) is not offered here: sharding
    //! already divides the state by the world size.
    explicit sharded_optimizer(const Comm& comm, mask_mode mode = dense{}, optimizer_options options = {})
        : comm_(&comm), options_(options) {
        if (comm.size() == 0 || comm.rank() >= comm.size())
            detail::fail("sharded_optimizer: rank " + std::to_string(comm.rank()) + " of a world of " +
                         std::to_string(comm.size()));
        if (options.compact_fixed_state)
            detail::fail("sharded_optimizer: compact_fixed_state is not supported (the state is sharded instead)");
        if (options.masking.target != mask_target::gradient && options.masking.target != mask_target::update)
            detail::fail("optimizer options: unknown mask target");
        if (options.on_nonfinite > nonfinite_policy::unchecked) detail::fail("optimizer options: unknown nonfinite policy");
        if (options.precision > state_precision::float64) detail::fail("optimizer options: unknown state precision");
        std::visit([](const auto& m) { m.validate(); }, mode);
        mode_ = std::move(mode);
    }

    std::size_t rank() const { return comm_->rank(); }
    std::size_t world_size() const { return comm_->size(); }

    // ---- groups (as childtune::optimizer) -----------------------------------------------

    std::size_t add_group(std::string name, const options_type& options, bool masked = true) {
        if (name.empty()) detail::fail("a group name must not be empty");
        for (const auto& g : groups_)
            if (g.name == name) detail::fail("group '" + name + "' added twice");
        Rule::validate(options, name);
        groups_.push_back({std::move(name), options, masked});
        return groups_.size() - 1;
    }
    std::size_t group_count() const { return groups_.size(); }
    const options_type& group_options(std::size_t group) const { return checked_group(group).options; }
    void set_group_options(std::size_t group, const options_type& options) {
        auto& g = checked_group(group);
        Rule::validate(options, g.name);
        g.options = options;
    }
    void set_lr(double lr) {
        for (const auto& g : groups_) {
            options_type o = g.options;
            o.lr = lr;
            Rule::validate(o, g.name);
        }
        for (auto& g : groups_) g.options.lr = lr;
    }

    // ---- parameters ---------------------------------------------------------------------

    //! Registers a parameter and its gradient (which the caller all-reduces
    //! before each step). Every rank registers the same tensors in the same
    //! order; the first step checks it. Tensors are added before the first step
    //! or load: they define the slicing.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        checked_group(group);
        if (frozen_) detail::fail("tensor '" + name + "': parameters are added before the first step or load (they define the slices)");
        if (name.empty()) detail::fail("group '" + groups_[group].name + "': a tensor name must not be empty");
        const std::string where = "group '" + groups_[group].name + "', tensor '" + name + "'";
        if (index_.contains(name)) detail::fail(where + ": registered twice (the name is taken)");
        if (param.size() != grad.size())
            detail::fail(where + ": gradient has " + std::to_string(grad.size()) + " elements, parameter has " +
                         std::to_string(param.size()));
        if (param.size() > 0 && (!param.data() || !grad.data())) detail::fail(where + ": null parameter or gradient data pointer");
        const std::uint32_t k = key.value_or(stable_tensor_key(name));
        for (const auto& t : tensors_)
            if (t.key == k) detail::fail(where + ": its Bernoulli key collides with tensor '" + t.name + "'; pass an explicit key");
        if (groups_[group].masked)
            if (const auto* f = std::get_if<fixed>(&mode_)) (void)f->view(name, param.size());
        tensor_record t;
        t.name = std::move(name);
        t.group = group;
        t.key = k;
        t.param = param;
        t.grad = grad;
        t.state_type = state_type_for(dtype_of<T>);
        t.flat_begin = total_;
        index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
        total_ += param.size();
    }
    template <contiguous_tensor P, contiguous_tensor G>
    void add_parameter(std::size_t group, std::string name, P& param, const G& grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        using T = std::ranges::range_value_t<P>;
        static_assert(std::is_same_v<T, std::ranges::range_value_t<G>>,
                      "a parameter and its gradient must have the same element type");
        add_parameter<T>(group, std::move(name), tensor_view<T>(param), tensor_view<const T>(grad), key);
    }
    std::size_t tensor_count() const { return tensors_.size(); }
    //! Elements of all registered tensors together.
    std::uint64_t total_elements() const { return total_; }
    //! This rank's slice of the flattened parameters.
    shard_range local_range() const { return shard_of(total_, world_size(), rank()); }

    //! A cheap fingerprint of the parameter set: rule, group names and masked
    //! flags, tensor names, groups, keys, element types and sizes, in order.
    std::uint64_t parameter_checksum() const {
        detail::checksum64 h;
        const auto str = [&](std::string_view s) {
            const std::uint64_t n = s.size();
            h.update(&n, sizeof n);
            h.update(s.data(), s.size());
        };
        const auto num = [&](std::uint64_t v) { h.update(&v, sizeof v); };
        str(Rule::name);
        num(groups_.size());
        for (const auto& g : groups_) {
            str(g.name);
            num(g.masked ? 1 : 0);
        }
        num(tensors_.size());
        for (const auto& t : tensors_) {
            str(t.name);
            num(t.group);
            num(t.key);
            num(static_cast<std::uint64_t>(t.param.type));
            num(t.param.size);
        }
        return h.value();
    }

    // ---- mask -------------------------------------------------------------------------------

    const mask_mode& mask() const { return mode_; }
    //! Every rank sets the same mode (a Child-Tuning_D mask from
    //! distributed/fisher.hpp is identical on every rank by construction).
    void set_mask(mask_mode mode) {
        std::visit([](const auto& m) { m.validate(); }, mode);
        if (const auto* f = std::get_if<fixed>(&mode)) check_mask_covers(*f);
        mode_ = std::move(mode);
    }
    const optimizer_options& options() const { return options_; }

    // ---- stepping -----------------------------------------------------------------------------

    std::uint64_t step_count() const { return step_count_; }

    //! Steps this rank's slice, then all-gathers every rank's updated slice into
    //! the registered parameters. Collective.
    template <execution_backend E = default_backend>
    step_result step(const E& exec = E{}) {
        if (!frozen_) agree([&] { freeze(); }); // the first step checks the registration on every rank
        std::vector<job> jobs;
        agree([&] { jobs = prepare_jobs(); });

        if (options_.on_nonfinite != nonfinite_policy::unchecked) {
            const std::uint64_t none = std::numeric_limits<std::uint64_t>::max();
            std::uint64_t bad = none;
            for (std::size_t p = 0; p < pieces_.size() && bad == none; ++p)
                if (!piece_finite(pieces_[p])) bad = pieces_[p].tensor;
            const auto all = detail::all_gather_value(*comm_, bad);
            bad = *std::min_element(all.begin(), all.end());
            if (bad != none) {
                const auto& t = tensors_[bad];
                if (options_.on_nonfinite == nonfinite_policy::raise)
                    detail::fail(describe(t) + ": gradient holds NaN or Inf (step skipped on every rank)");
                return {false, t.name};
            }
        }

        // State for pieces taking their first step; committed when all allocations succeeded.
        std::vector<std::pair<std::size_t, std::vector<std::byte>>> fresh;
        for (std::size_t p = 0; p < pieces_.size(); ++p) {
            const auto& pc = pieces_[p];
            const auto& t = tensors_[pc.tensor];
            for (std::size_t b = pc.buffers; b < jobs[p].buffers; ++b)
                fresh.emplace_back(p * 2 + b, std::vector<std::byte>(pc.range.size() * state_size(t.state_type)));
        }
        for (auto& [slot, buffer] : fresh) pieces_[slot / 2].state[slot % 2] = std::move(buffer);
        for (std::size_t p = 0; p < pieces_.size(); ++p) {
            auto& pc = pieces_[p];
            const bool fresh_state = pc.buffers < jobs[p].buffers;
            pc.buffers = std::max(pc.buffers, jobs[p].buffers);
            finish_job(jobs[p], pc, fresh_state);
        }

        std::vector<work_item> items;
        std::size_t elements = 0;
        for (std::size_t p = 0; p < pieces_.size(); ++p)
            for (std::uint64_t b = 0; b < pieces_[p].range.size(); b += chunk_elements)
                items.push_back({p, b, std::min<std::uint64_t>(pieces_[p].range.size(), b + chunk_elements)});
        for (const auto& it : items) elements += it.end - it.begin;
        const auto run = [&](std::size_t w) {
            const auto& it = items[w];
            jobs[it.piece].run(jobs[it.piece], it.begin, it.end);
        };
        if (elements < parallel_min_elements) serial_backend{}.parallel_for(items.size(), run);
        else exec.parallel_for(items.size(), run);

        for (auto& t : tensors_) ++t.steps;
        ++step_count_;
        gather_parameters();
        return {};
    }

    //! Bytes of optimizer state this rank holds (its slice's moments):
    //! about 1/world_size of the single-process optimizer's.
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& p : pieces_) n += p.state[0].size() + p.state[1].size();
        return n;
    }

    // ---- per-rank state file ----------------------------------------------------------------------

    //! Writes this rank's state: its rank, the world size, the parameter-set
    //! checksum, the step count, mask mode, group options and its slice's state.
    //! Each rank saves to its own file.
    void save(std::ostream& out) const {
        if (!frozen_) detail::fail("sharded_optimizer: save() before the first step or load (no slices yet)");
        detail::binary_writer w(out);
        w.header(shard_magic, shard_version);
        w.value<std::uint64_t>(rank());
        w.value<std::uint64_t>(world_size());
        w.value<std::uint64_t>(parameter_checksum());
        w.value<std::uint64_t>(total_);
        w.string(Rule::name);
        w.value<std::uint64_t>(step_count_);
        detail::write_mask_mode(w, mode_);
        w.value<std::uint8_t>(static_cast<std::uint8_t>(options_.masking.target));
        w.value<std::uint8_t>(options_.masking.decay_masked ? 1 : 0);
        detail::write_state_groups<Rule>(w, groups_);
        w.value<std::uint64_t>(tensors_.size());
        for (const auto& t : tensors_) w.value<std::uint64_t>(t.steps);
        w.value<std::uint64_t>(pieces_.size());
        for (const auto& p : pieces_) {
            w.value<std::uint64_t>(p.tensor);
            w.value<std::uint64_t>(p.range.begin);
            w.value<std::uint64_t>(p.range.end);
            w.value<std::uint8_t>(static_cast<std::uint8_t>(p.buffers));
            for (std::size_t b = 0; b < p.buffers; ++b) write_state(w, tensors_[p.tensor].state_type, p.state[b]);
        }
        w.finish();
    }
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "sharded optimizer state", [&](std::ostream& out) { save(out); });
    }

    //! Restores this rank's state from a file written by save() on the same rank
    //! of the same world size for the same parameter set. Collective: when any
    //! rank cannot load (missing, corrupt, another world size or parameter set),
    //! every rank throws childtune::error and nothing changes.
    void load(std::istream& in) {
        if (!frozen_) agree([&] { freeze(); });
        staged s;
        agree([&] { s = read(in); });
        commit(std::move(s));
    }
    //! As load(istream); a rank whose file does not open fails them all.
    void load(const std::string& path) {
        if (!frozen_) agree([&] { freeze(); });
        staged s;
        agree([&] {
            std::ifstream in(path, std::ios::binary);
            if (!in) detail::fail("cannot open sharded optimizer state '" + path + "'");
            s = read(in);
        });
        commit(std::move(s));
    }

private:
    static constexpr std::string_view shard_magic{"CTSHARD\1", 8};
    static constexpr std::uint32_t shard_version = 1;
    static constexpr std::size_t chunk_elements = std::size_t{1} << 16;
    static constexpr std::size_t parallel_min_elements = std::size_t{1} << 17;

    struct group_record {
        std::string name;
        options_type options;
        bool masked;
    };
    struct tensor_record {
        std::string name;
        std::size_t group = 0;
        std::uint32_t key = 0;
        any_tensor_view param;
        any_tensor_view grad;
        dtype state_type = dtype::float32;
        std::uint64_t steps = 0;
        std::uint64_t flat_begin = 0; //!< index of its first element in the flat space
    };
    //! The part of one tensor inside this rank's slice, and its optimizer state.
    struct piece {
        std::size_t tensor = 0;
        shard_range range; //!< elements of the tensor
        std::size_t buffers = 0;
        std::vector<std::byte> state[2];
    };
    using any_mask_view = std::variant<dense_view, bernoulli_view, fixed_view>;
    struct job {
        any_mask_view mask;
        std::size_t buffers = 0;
        typename Rule::template step_constants<float> constants_f{};
        typename Rule::template step_constants<double> constants_d{};
        void (*run)(const job&, std::size_t, std::size_t) = nullptr;
        void* param = nullptr; //!< first element of the piece
        const void* grad = nullptr;
        void* state[2] = {nullptr, nullptr};
        masking_options masking;
    };
    struct work_item {
        std::size_t piece;
        std::uint64_t begin, end;
    };
    struct staged {
        std::uint64_t steps = 0;
        mask_mode mode;
        masking_options masking;
        std::vector<group_record> groups;
        std::vector<std::uint64_t> tensor_steps;
        std::vector<piece> pieces;
    };

    template <class F>
    void agree(F&& f) {
        detail::agree(*comm_, std::forward<F>(f));
    }

    //! Checks that every rank registered the same parameter set, then computes
    //! this rank's pieces. Runs once; its one collective comes before anything
    //! that can fail, so ranks cannot fall out of step inside agree().
    void freeze() {
        if (frozen_) return;
        const auto sums = detail::all_gather_value(*comm_, parameter_checksum());
        for (std::size_t r = 0; r < sums.size(); ++r)
            if (sums[r] != sums[0])
                detail::fail("sharded_optimizer: rank " + std::to_string(r) +
                             " registered a different parameter set than rank 0 (names, sizes, element types or groups "
                             "differ: parameter checksums disagree)");
        std::vector<piece> pieces;
        const shard_range mine = local_range();
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            const shard_range part = intersect(mine, t.flat_begin, t.flat_begin + t.param.size);
            if (part.size() > 0) pieces.push_back({i, part, 0, {}});
        }
        pieces_ = std::move(pieces);
        frozen_ = true;
    }

    std::vector<job> prepare_jobs() const {
        if (const auto* f = std::get_if<fixed>(&mode_)) check_mask_covers(*f);
        std::vector<job> jobs(pieces_.size());
        for (std::size_t p = 0; p < pieces_.size(); ++p) {
            const auto& pc = pieces_[p];
            const auto& t = tensors_[pc.tensor];
            auto& j = jobs[p];
            // The views start at the piece's first element, so element i of the
            // piece gets the decision of element range.begin + i of the tensor.
            j.mask = !groups_[t.group].masked
                         ? any_mask_view{dense_view{}}
                         : std::visit(
                               [&](const auto& m) -> any_mask_view {
                                   using M = std::decay_t<decltype(m)>;
                                   if constexpr (std::is_same_v<M, fixed>) return m.view(t.name, t.param.size, pc.range.begin);
                                   else return m.view(t.key, step_count_, pc.range.begin);
                               },
                               mode_);
            j.buffers = Rule::state_buffers(groups_[t.group].options);
            j.masking = options_.masking;
            switch (t.param.type) {
            case dtype::float32: j.run = pick_runner<float>(t.state_type, j.mask); break;
            case dtype::float64: j.run = pick_runner<double>(t.state_type, j.mask); break;
            case dtype::bfloat16: j.run = pick_runner<bfloat16>(t.state_type, j.mask); break;
            case dtype::float16: j.run = pick_runner<float16>(t.state_type, j.mask); break;
            }
        }
        return jobs;
    }
    void finish_job(job& j, piece& pc, bool fresh_state) const {
        const auto& t = tensors_[pc.tensor];
        const auto& o = groups_[t.group].options;
        if (t.state_type == dtype::float64) j.constants_d = Rule::template prepare<double>(o, t.steps + 1, fresh_state);
        else j.constants_f = Rule::template prepare<float>(o, t.steps + 1, fresh_state);
        const std::size_t bytes = dtype_bytes(t.param.type);
        j.param = static_cast<std::byte*>(t.param.data) + pc.range.begin * bytes;
        j.grad = static_cast<const std::byte*>(t.grad.data) + pc.range.begin * bytes;
        j.state[0] = pc.state[0].empty() ? nullptr : pc.state[0].data();
        j.state[1] = pc.state[1].empty() ? nullptr : pc.state[1].data();
    }

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
    static auto pick_runner(const any_mask_view& mask) {
        return std::visit([](const auto& v) { return &run_job<P, S, std::decay_t<decltype(v)>>; }, mask);
    }
    template <class P>
    static auto pick_runner(dtype state, const any_mask_view& mask) {
        using runner = void (*)(const job&, std::size_t, std::size_t);
        return state == dtype::float64 ? runner{pick_runner<P, double>(mask)} : runner{pick_runner<P, float>(mask)};
    }

    bool piece_finite(const piece& pc) const {
        const auto& g = tensors_[pc.tensor].grad;
        const std::size_t b = pc.range.begin, n = pc.range.size();
        switch (g.type) {
        case dtype::float32: return detail::all_finite(static_cast<const float*>(g.data) + b, n);
        case dtype::float64: return detail::all_finite(static_cast<const double*>(g.data) + b, n);
        case dtype::bfloat16: return detail::all_finite(static_cast<const bfloat16*>(g.data) + b, n);
        case dtype::float16: return detail::all_finite(static_cast<const float16*>(g.data) + b, n);
        }
        return true;
    }

    //! Every rank's updated slice into every rank's parameters. The byte counts
    //! follow from the slices, which every rank computes alike.
    void gather_parameters() {
        const std::size_t world = world_size();
        if (world == 1) return;
        std::vector<std::size_t> counts(world, 0);
        for (std::size_t r = 0; r < world; ++r) counts[r] = slice_bytes(shard_of(total_, world, r));
        std::vector<std::byte> mine(counts[rank()]);
        std::size_t at = 0;
        for (const auto& pc : pieces_) {
            const auto& t = tensors_[pc.tensor];
            const std::size_t bytes = dtype_bytes(t.param.type);
            std::memcpy(mine.data() + at, static_cast<const std::byte*>(t.param.data) + pc.range.begin * bytes,
                        pc.range.size() * bytes);
            at += pc.range.size() * bytes;
        }
        std::size_t total_bytes = 0;
        for (const auto c : counts) total_bytes += c;
        std::vector<std::byte> all(total_bytes);
        comm_->all_gather(mine, all, counts);
        at = 0;
        for (std::size_t r = 0; r < world; ++r) {
            const shard_range slice = shard_of(total_, world, r);
            for (const auto& t : tensors_) {
                const shard_range part = intersect(slice, t.flat_begin, t.flat_begin + t.param.size);
                if (part.size() == 0) continue;
                const std::size_t bytes = dtype_bytes(t.param.type);
                if (r != rank())
                    std::memcpy(static_cast<std::byte*>(t.param.data) + part.begin * bytes, all.data() + at,
                                part.size() * bytes);
                at += part.size() * bytes;
            }
        }
    }
    std::size_t slice_bytes(shard_range slice) const {
        std::size_t n = 0;
        for (const auto& t : tensors_)
            n += intersect(slice, t.flat_begin, t.flat_begin + t.param.size).size() * dtype_bytes(t.param.type);
        return n;
    }

    //! This rank's file, checked against its slices (freeze() has run); rank-local.
    staged read(std::istream& in) const {
        detail::binary_reader r(in, "sharded optimizer state");
        r.header(shard_magic, shard_version);
        const auto file_rank = r.value<std::uint64_t>();
        const auto file_world = r.value<std::uint64_t>();
        if (file_world != world_size() || file_rank != rank())
            detail::fail("sharded optimizer state was written by rank " + std::to_string(file_rank) + " of a world of " +
                         std::to_string(file_world) + " ranks; this is rank " + std::to_string(rank()) + " of " +
                         std::to_string(world_size()) + " (resume with the same world size, each rank from its own file)");
        if (r.value<std::uint64_t>() != parameter_checksum())
            detail::fail("sharded optimizer state was written for a different parameter set (names, sizes, element "
                         "types or groups differ: parameter checksums disagree)");
        if (r.value<std::uint64_t>() != total_) detail::fail("sharded optimizer state is corrupt: element count differs");
        const std::string rule = r.string();
        if (rule != Rule::name)
            detail::fail("sharded optimizer state: written by a '" + rule + "' optimizer, this one is '" +
                         std::string(Rule::name) + "'");
        staged s;
        s.steps = r.value<std::uint64_t>();
        s.mode = detail::read_mask_mode(r);
        const auto target = r.value<std::uint8_t>();
        if (target > 1) detail::fail("sharded optimizer state is corrupt: unknown mask target");
        s.masking.target = static_cast<mask_target>(target);
        s.masking.decay_masked = r.value<std::uint8_t>() != 0;
        s.groups = detail::read_state_groups<Rule>(r, groups_);
        if (r.value<std::uint64_t>() != tensors_.size()) detail::fail("sharded optimizer state is corrupt: tensor count differs");
        s.tensor_steps.resize(tensors_.size());
        for (auto& v : s.tensor_steps) v = r.value<std::uint64_t>();
        if (r.value<std::uint64_t>() != pieces_.size()) detail::fail("sharded optimizer state is corrupt: slice layout differs");
        s.pieces.resize(pieces_.size());
        for (std::size_t p = 0; p < pieces_.size(); ++p) {
            auto& sp = s.pieces[p];
            sp.tensor = r.value<std::uint64_t>();
            sp.range.begin = r.value<std::uint64_t>();
            sp.range.end = r.value<std::uint64_t>();
            if (sp.tensor != pieces_[p].tensor || !(sp.range == pieces_[p].range))
                detail::fail("sharded optimizer state is corrupt: slice layout differs");
            sp.buffers = r.value<std::uint8_t>();
            if (sp.buffers > Rule::max_state_buffers) detail::fail("sharded optimizer state is corrupt: too many state buffers");
            const dtype type = tensors_[sp.tensor].state_type;
            for (std::size_t b = 0; b < sp.buffers; ++b) {
                sp.state[b].resize(sp.range.size() * state_size(type));
                read_state(r, type, sp.state[b]);
            }
        }
        r.finish();
        if (const auto* f = std::get_if<fixed>(&s.mode))
            for (const auto& t : tensors_)
                if (s.groups[t.group].masked) (void)f->view(t.name, t.param.size);
        return s;
    }
    void commit(staged s) noexcept {
        step_count_ = s.steps;
        mode_ = std::move(s.mode);
        options_.masking = s.masking;
        groups_ = std::move(s.groups);
        for (std::size_t i = 0; i < tensors_.size(); ++i) tensors_[i].steps = s.tensor_steps[i];
        pieces_ = std::move(s.pieces);
    }

    void check_mask_covers(const fixed& f) const {
        std::size_t covered = 0;
        for (const auto& t : tensors_)
            if (groups_[t.group].masked) {
                (void)f.view(t.name, t.param.size);
                ++covered;
            }
        if (covered != f.masks.tensor_count())
            detail::fail("fixed mask: covers " + std::to_string(f.masks.tensor_count()) + " tensors, " +
                         std::to_string(covered) + " masked tensors are registered (built for a different parameter set?)");
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
    static void write_state(detail::binary_writer& w, dtype type, const std::vector<std::byte>& s) {
        if (type == dtype::float64) w.array(std::span<const double>(reinterpret_cast<const double*>(s.data()), s.size() / 8));
        else w.array(std::span<const float>(reinterpret_cast<const float*>(s.data()), s.size() / 4));
    }
    static void read_state(detail::binary_reader& r, dtype type, std::vector<std::byte>& s) {
        if (type == dtype::float64) r.array_into(std::span<double>(reinterpret_cast<double*>(s.data()), s.size() / 8));
        else r.array_into(std::span<float>(reinterpret_cast<float*>(s.data()), s.size() / 4));
    }
    group_record& checked_group(std::size_t group) {
        if (group >= groups_.size())
            detail::fail("group index " + std::to_string(group) + " is out of range (" + std::to_string(groups_.size()) + " groups)");
        return groups_[group];
    }
    const group_record& checked_group(std::size_t group) const { return const_cast<sharded_optimizer*>(this)->checked_group(group); }
    std::string describe(const tensor_record& t) const {
        return "group '" + groups_[t.group].name + "', tensor '" + t.name + "'";
    }

    const Comm* comm_;
    optimizer_options options_;
    mask_mode mode_;
    std::vector<group_record> groups_;
    std::vector<tensor_record> tensors_;
    std::unordered_map<std::string, std::size_t> index_;
    std::vector<piece> pieces_;
    std::uint64_t total_ = 0;
    std::uint64_t step_count_ = 0;
    bool frozen_ = false;
};

} // namespace childtune
