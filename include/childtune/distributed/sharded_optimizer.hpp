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
//! The stepping is the core optimizer's: at the first step or load, each rank
//! builds a childtune::optimizer that holds its part of every tensor as a slice
//! (optimizer::add_parameter_slice; an empty one where its share misses the
//! tensor, so every rank's core has the same tensors, keys and mask coverage).
//! A slice reads its tensor's Bernoulli draws and fixed mask bits at its offset,
//! and the per-tensor step constants do not depend on the slicing, so the result
//! is bit-identical to childtune::optimizer in one process, for every world size.
//!
//! Collective members (step, load) must be called by every rank in the same
//! order. They fail on every rank together: a check that fails on one rank is
//! agreed on before anything changes, so no rank is left waiting in a collective
//! the others abandoned.

#include <childtune/distributed/communicator.hpp>
#include <childtune/distributed/shard.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/optimizer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <istream>
#include <limits>
#include <numeric>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace childtune {

//! Child-Tuning with the optimizer state sharded over the ranks of `Comm` (ZeRO
//! stage 1): each rank steps one slice and all-gathers the rest; the parameters
//! equal childtune::optimizer's in one process bit for bit. Rules with a
//! per-tensor phase (LAMB) are refused at compile time.
template <update_rule Rule, communicator Comm>
class sharded_optimizer {
    static_assert(detail::rule_reduction_count<Rule>() == 0,
                  "sharded_optimizer: a rule with a per-tensor phase (LAMB's trust ratio) reduces over whole tensors, "
                  "which the slices of ZeRO-1 cut across ranks; use childtune::optimizer on every rank instead");

public:
    //! The update rule.
    using rule_type = Rule;
    //! The rule's per-group hyperparameters.
    using options_type = typename Rule::options;

    //! `comm` must outlive the optimizer. Neither compact Child-Tuning_D state
    //! (sharding already divides the state by the world size) nor 8-bit state
    //! (its blocks would follow the shards) is offered here.
    explicit sharded_optimizer(const Comm& comm, mask_mode mode = dense{}, optimizer_options options = {})
        : sharded_optimizer(comm, any_mask(std::move(mode)), options, 0) {}
    //! The same with any mask_policy (gradient-driven ones see the whole
    //! tensors' gradients, gathered from the ranks' slices through `comm`).
    template <childtune::mask_policy M>
        requires(!std::is_convertible_v<M, mask_mode>)
    sharded_optimizer(const Comm& comm, M mask, optimizer_options options = {})
        : sharded_optimizer(comm, any_mask(std::move(mask)), options, 0) {}

    //! This process's rank in the communicator.
    std::size_t rank() const { return comm_->rank(); }
    //! Number of ranks.
    std::size_t world_size() const { return comm_->size(); }

    // ---- groups (held by the core optimizer) ---------------------------------------------

    //! Adds a parameter group (every rank adds the same groups in the same order).
    std::size_t add_group(std::string name, const options_type& options, bool masked = true) {
        return core_.add_group(std::move(name), options, masked);
    }
    //! Number of groups added.
    std::size_t group_count() const { return core_.group_count(); }
    //! The group's current hyperparameters.
    const options_type& group_options(std::size_t group) const { return core_.group_options(group); }
    //! Replaces a group's hyperparameters between steps (every rank does the same).
    void set_group_options(std::size_t group, const options_type& options) { core_.set_group_options(group, options); }
    //! Sets the learning rate of every group (every rank does the same).
    void set_lr(double lr) { core_.set_lr(lr); }

    // ---- parameters ---------------------------------------------------------------------

    //! Registers a parameter and its gradient (which the caller all-reduces
    //! before each step), with the core optimizer's checks. Every rank registers
    //! the same tensors in the same order; the first step checks it. Tensors are
    //! added before the first step or load: they define the slicing.
    template <parameter_element T>
    void add_parameter(std::size_t group, std::string name, tensor_view<T> param, tensor_view<const T> grad,
                       std::optional<std::uint32_t> key = std::nullopt) {
        if (frozen_) detail::fail("tensor '" + name + "': parameters are added before the first step or load (they define the slices)");
        entries_.push_back({name, group, key.value_or(stable_tensor_key(name)), param, grad, sizeof(T), total_, &add_slice<T>});
        try {
            core_.add_parameter(group, std::move(name), param, grad, key); // until the first step: whole tensors
        } catch (...) {
            entries_.pop_back();
            throw;
        }
        total_ += param.size();
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
    //! Number of tensors registered.
    std::size_t tensor_count() const { return entries_.size(); }
    //! Elements of all registered tensors together.
    std::uint64_t total_elements() const { return total_; }
    //! This rank's slice of the flattened parameters.
    shard_range local_range() const { return shard_of(total_, world_size(), rank()); }

    //! A cheap fingerprint of the parameter set: rule, group names and masked
    //! flags, tensor names, groups, keys, element types and sizes, in order.
    std::uint64_t parameter_checksum() const {
        detail::checksum64 h;
        h.update_string(Rule::name);
        h.update_number(core_.group_count());
        for (std::size_t g = 0; g < core_.group_count(); ++g) {
            h.update_string(core_.group_name(g));
            h.update_number(core_.group_masked(g) ? 1 : 0);
        }
        h.update_number(entries_.size());
        for (const auto& e : entries_) {
            h.update_string(e.name);
            for (const std::uint64_t v : {std::uint64_t{e.group}, std::uint64_t{e.key}, std::uint64_t(e.param.type), e.param.size})
                h.update_number(v);
        }
        return h.value();
    }

    // ---- mask -------------------------------------------------------------------------------

    //! The optimizer-wide mask.
    const mask_mode& mask() const { return core_.mask(); }
    //! The optimizer-wide policy (any mask_policy), as this rank holds it.
    const any_mask& mask_policy() const { return core_.mask_policy(); }
    //! Every rank sets the same mode (a Child-Tuning_D mask from
    //! distributed/fisher.hpp is identical on every rank by construction). A fixed
    //! mask must cover the masked tensors, whole (the core checks it).
    void set_mask(mask_mode mode) { core_.set_mask(std::move(mode)); }
    //! The options given to the constructor; the masking options are the ones a
    //! load() restored.
    const optimizer_options& options() const { return options_; }

    // ---- stepping -----------------------------------------------------------------------------

    //! Number of steps applied so far (the same on every rank).
    std::uint64_t step_count() const { return core_.step_count(); }

    //! Steps this rank's slice, then all-gathers every rank's updated slice into
    //! the registered parameters. Collective. Before any rank changes anything,
    //! every rank agrees that its slices are built (first step), the step is valid
    //! and its optimizer state is allocated (reserve_state; a rank whose
    //! allocation succeeded keeps it when another's failed) and, unless unchecked,
    //! that no rank's slice holds a NaN/Inf gradient.
    template <execution_backend E = default_backend>
    step_result step(const E& exec = E{}) {
        std::optional<optimizer<Rule>> built;
        detail::agree(*comm_, [&] {
            if (!frozen_) built.emplace(build_core());
            (built ? *built : core_).reserve_state();
        });
        if (built) adopt(std::move(*built));
        if (options_.on_nonfinite != nonfinite_policy::unchecked) {
            if (const auto bad = agreed_nonfinite(exec)) {
                const auto& e = entries_[*bad];
                if (options_.on_nonfinite == nonfinite_policy::raise)
                    detail::fail("group '" + core_.group_name(e.group) + "', tensor '" + e.name +
                                 "': gradient holds NaN or Inf (step skipped on every rank)");
                return {false, e.name};
            }
        }
        core_.step(exec);
        gather_parameters();
        return {};
    }

    //! Bytes of optimizer state this rank holds (its slice's moments):
    //! about 1/world_size of the single-process optimizer's.
    std::size_t state_bytes() const { return core_.state_bytes(); }
    //! This rank's core optimizer over its slices (for summarize(): groups,
    //! masks and the kept counts of this rank's slices).
    const optimizer<Rule>& core() const { return core_; }

    // ---- per-rank state file ----------------------------------------------------------------------

    //! Writes this rank's state: a header (rank, world size, parameter-set
    //! checksum, total elements) and then the core optimizer's state file of its
    //! slices (step counts, mask mode, group options, state). The header carries
    //! the slice layout, which the core's file does not. Each rank saves to its
    //! own file.
    void save(std::ostream& out) const {
        if (!frozen_) detail::fail("sharded_optimizer: save() before the first step or load (no slices yet)");
        detail::binary_writer w(out);
        w.header(shard_magic, shard_version);
        for (const std::uint64_t v : {std::uint64_t{rank()}, std::uint64_t{world_size()}, parameter_checksum(), total_})
            w.value<std::uint64_t>(v);
        w.finish();
        core_.save(out);
    }
    //! Saves this rank's state to `path` crash-safely (io/atomic_file.hpp).
    void save(const std::string& path) const {
        detail::replace_file_atomically(path, "sharded optimizer state", [&](std::ostream& out) { save(out); });
    }

    //! Restores this rank's state from a file written by save() on the same rank
    //! of the same world size for the same parameter set. Collective: when any
    //! rank cannot load (missing, corrupt, another world size or parameter set),
    //! every rank throws childtune::error and nothing changes.
    void load(std::istream& in) {
        load_agreed([&](optimizer<Rule>& core) { read(core, in); });
    }
    //! As load(istream); a rank whose file does not open fails them all.
    void load(const std::string& path) {
        load_agreed([&](optimizer<Rule>& core) {
            std::ifstream in(path, std::ios::binary);
            if (!in) detail::fail("cannot open sharded optimizer state '" + path + "'");
            read(core, in);
        });
    }

private:
    //! The constructors' common part: the checks, then the core optimizer.
    sharded_optimizer(const Comm& comm, any_mask mask, optimizer_options options, int)
        : comm_(&comm), options_(options), core_(std::move(mask), options) {
        if (comm.size() == 0 || comm.rank() >= comm.size())
            detail::fail("sharded_optimizer: rank " + std::to_string(comm.rank()) + " of a world of " +
                         std::to_string(comm.size()));
        if (options.compact_fixed_state)
            detail::fail("sharded_optimizer: compact_fixed_state is not supported (the state is sharded instead)");
        if (options.storage == state_storage::blockwise8)
            detail::fail("sharded_optimizer: 8-bit blockwise state is not supported (its blocks would follow the shard "
                         "boundaries, so results would depend on the world size)");
    }

    static constexpr std::string_view shard_magic{"CTSHARD\1", 8};
    //! 2: the header, checksummed on its own, then the core's state file.
    static constexpr std::uint32_t shard_version = 2;

    //! A registered tensor, whole: what the checksum, the slicing and the gather need.
    struct entry {
        std::string name;
        std::size_t group = 0;
        std::uint32_t key = 0;
        any_tensor_view param;
        any_tensor_view grad;
        std::size_t element_bytes = 0;
        std::uint64_t flat_begin = 0; //!< index of its first element in the flat space
        //! Registers elements `part` of the tensor with a core (add_slice of its element type).
        void (*add_to)(optimizer<Rule>&, const entry&, shard_range) = nullptr;

        //! Its elements inside `slice` of the flat space.
        shard_range part(shard_range slice) const { return intersect(slice, flat_begin, flat_begin + param.size); }
        std::byte* bytes_at(std::uint64_t element) const { return static_cast<std::byte*>(param.data) + element * element_bytes; }
    };

    template <parameter_element T>
    static void add_slice(optimizer<Rule>& core, const entry& e, shard_range part) {
        const auto n = static_cast<std::size_t>(part.size());
        core.add_parameter_slice(e.group, e.name, e.param.size, static_cast<std::size_t>(part.begin),
                                 tensor_view<T>(static_cast<T*>(e.param.data) + part.begin, n),
                                 tensor_view<const T>(static_cast<const T*>(e.grad.data) + part.begin, n), e.key);
    }

    //! Checks that every rank registered the same parameter set, then builds a
    //! core optimizer over this rank's part of every tensor, with this
    //! optimizer's groups, mask and options. It steps unchecked: the NaN/Inf
    //! check is agreed across ranks here. Its one collective comes before
    //! anything that can fail, as agree() requires.
    optimizer<Rule> build_core() const {
        const auto sums = detail::all_gather_value(*comm_, parameter_checksum());
        for (std::size_t r = 0; r < sums.size(); ++r)
            if (sums[r] != sums[0])
                detail::fail("sharded_optimizer: rank " + std::to_string(r) +
                             " registered a different parameter set than rank 0 (names, sizes, element types or groups "
                             "differ: parameter checksums disagree)");
        optimizer_options o = core_.options();
        o.on_nonfinite = nonfinite_policy::unchecked;
        o.allow_empty = true; // a rank's slices may hold no element of a group, or none at all
        optimizer<Rule> core(core_.mask_policy(), o);
        core.set_gradient_exchange({rank(), world_size(),
                                    [c = comm_](std::span<const std::byte> mine, std::span<std::byte> all,
                                                std::span<const std::size_t> counts) { c->all_gather(mine, all, counts); }});
        for (std::size_t g = 0; g < core_.group_count(); ++g)
            core.add_group(core_.group_name(g), core_.group_options(g), core_.group_masked(g));
        for (const auto& e : entries_) e.add_to(core, e, e.part(local_range()));
        return core;
    }
    //! Takes over a core that every rank built (and loaded) successfully.
    void adopt(optimizer<Rule>&& core) noexcept {
        core_ = std::move(core);
        frozen_ = true;
        options_.masking = core_.options().masking;
    }

    //! Loads into a fresh core (everything a load does not restore is rebuilt
    //! from the registration), so a rank whose load succeeded changes nothing
    //! when another's failed.
    template <class Read>
    void load_agreed(Read&& read_into) {
        std::optional<optimizer<Rule>> built;
        detail::agree(*comm_, [&] {
            built.emplace(build_core());
            read_into(*built);
        });
        adopt(std::move(*built));
    }
    //! This rank's file: the header, checked against this rank, then the core's
    //! state. Rank-local.
    void read(optimizer<Rule>& core, std::istream& in) const {
        detail::binary_reader r(in, "sharded optimizer state");
        r.header(shard_magic, shard_version);
        std::uint64_t header[4];
        for (auto& v : header) v = r.value<std::uint64_t>();
        r.finish();
        const auto [file_rank, file_world, checksum, total] = header;
        if (file_world != world_size() || file_rank != rank())
            detail::fail("sharded optimizer state was written by rank " + std::to_string(file_rank) + " of a world of " +
                         std::to_string(file_world) + " ranks; this is rank " + std::to_string(rank()) + " of " +
                         std::to_string(world_size()) + " (resume with the same world size, each rank from its own file)");
        if (checksum != parameter_checksum())
            detail::fail("sharded optimizer state was written for a different parameter set (names, sizes, element "
                         "types or groups differ: parameter checksums disagree)");
        if (total != total_) detail::fail("sharded optimizer state is corrupt: element count differs");
        core.load(in);
    }

    //! The first tensor (registration order) whose gradient holds NaN or Inf in
    //! any rank's slice: the same answer on every rank.
    template <class E>
    std::optional<std::size_t> agreed_nonfinite(const E& exec) const {
        constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();
        const auto mine = core_.first_nonfinite_gradient(exec);
        const auto all = detail::all_gather_value(*comm_, mine ? std::uint64_t{*mine} : none);
        const std::uint64_t first = *std::min_element(all.begin(), all.end());
        if (first == none) return std::nullopt;
        return static_cast<std::size_t>(first);
    }

    //! Every rank's updated slice into every rank's parameters. The byte counts
    //! follow from the slices, which every rank computes alike.
    void gather_parameters() {
        const std::size_t world = world_size();
        if (world == 1) return;
        std::vector<std::size_t> counts(world, 0);
        for (std::size_t r = 0; r < world; ++r)
            for (const auto& e : entries_) counts[r] += e.part(shard_of(total_, world, r)).size() * e.element_bytes;
        std::vector<std::byte> mine(counts[rank()]), all(std::accumulate(counts.begin(), counts.end(), std::size_t{0}));
        std::size_t at = 0;
        for (const auto& e : entries_) {
            const shard_range p = e.part(local_range());
            const std::size_t bytes = p.size() * e.element_bytes;
            if (bytes > 0) std::memcpy(mine.data() + at, e.bytes_at(p.begin), bytes);
            at += bytes;
        }
        comm_->all_gather(mine, all, counts);
        at = 0;
        for (std::size_t r = 0; r < world; ++r)
            for (const auto& e : entries_) {
                const shard_range p = e.part(shard_of(total_, world, r));
                const std::size_t bytes = p.size() * e.element_bytes;
                if (r != rank() && bytes > 0) std::memcpy(e.bytes_at(p.begin), all.data() + at, bytes);
                at += bytes;
            }
    }

    const Comm* comm_;
    //! As given; the core's on_nonfinite is `unchecked` (the check is agreed here).
    optimizer_options options_;
    //! Owns the groups, the mask and the state. Until the first step or load it
    //! holds the whole tensors (registration checks only; it never steps), then
    //! this rank's slices.
    optimizer<Rule> core_;
    std::vector<entry> entries_;
    std::uint64_t total_ = 0;
    bool frozen_ = false;
};

} // namespace childtune
