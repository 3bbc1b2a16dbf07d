#pragma once
//! \file
//! The collective operations data-parallel Child-Tuning needs from an existing
//! distributed engine (MPI, LibTorch c10d): no transport of childtune's own.
//!
//! The set is the minimum the sharded optimizer and the distributed Fisher
//! selection use: sums of counters and scores, a rank-ordered gather of
//! variable-size byte blocks (parameter slices of mixed element types, checksums,
//! score chunks) and a broadcast. Everything else is built from these in the core,
//! so that every adapter gets the same, deterministic results.

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace childtune {

// The communicator concept is in concepts.hpp.


//! World size 1: every collective is a copy or nothing. The sharded optimizer
//! over it is the single-process optimizer.
class single_process_communicator {
public:
    //! Always 0.
    std::size_t rank() const { return 0; }
    //! Always 1.
    std::size_t size() const { return 1; }
    //! Nothing to do: the sum over one rank.
    void all_reduce_sum(std::span<float>) const {}
    //! Nothing to do: the sum over one rank.
    void all_reduce_sum(std::span<double>) const {}
    //! Nothing to do: the sum over one rank.
    void all_reduce_sum(std::span<std::uint64_t>) const {}
    //! Copies `mine` to `all`; throws childtune::error unless counts = {mine.size()}
    //! and all.size() = mine.size().
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all, std::span<const std::size_t> counts) const {
        if (counts.size() != 1 || counts[0] != mine.size() || all.size() != mine.size())
            detail::fail("single_process_communicator: all_gather of " + std::to_string(mine.size()) +
                         " bytes with mismatched counts or receive buffer");
        if (!mine.empty()) std::memcpy(all.data(), mine.data(), mine.size());
    }
    //! Nothing to do for root 0; throws childtune::error for any other root.
    void broadcast(std::span<std::byte>, std::size_t root) const {
        if (root != 0) detail::fail("single_process_communicator: broadcast from rank " + std::to_string(root) + " of 1");
    }
};

namespace detail {

//! The argument checks of an engine communicator's all_gather (`who` names it,
//! e.g. "mpi::communicator"): one count per rank, this rank's block as long as
//! its count, a receive buffer of exactly the counts' total. Returns the total.
inline std::size_t check_all_gather(std::string_view who, std::size_t rank, std::size_t world, std::size_t mine_bytes,
                                    std::size_t all_bytes, std::span<const std::size_t> counts) {
    const auto where = [&] { return " [rank " + std::to_string(rank) + " of " + std::to_string(world) + "]"; };
    if (counts.size() != world)
        fail(std::string(who) + ": all_gather with " + std::to_string(counts.size()) + " counts in a world of " +
             std::to_string(world) + where());
    if (counts[rank] != mine_bytes)
        fail(std::string(who) + ": all_gather sends " + std::to_string(mine_bytes) + " bytes, its count says " +
             std::to_string(counts[rank]) + where());
    const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
    if (total != all_bytes)
        fail(std::string(who) + ": all_gather receives " + std::to_string(total) + " bytes into a buffer of " +
             std::to_string(all_bytes) + where());
    return total;
}

//! The root of an engine communicator's broadcast must be a rank of the world.
inline void check_broadcast_root(std::string_view who, std::size_t root, std::size_t world) {
    if (root >= world)
        fail(std::string(who) + ": broadcast from rank " + std::to_string(root) + " of " + std::to_string(world));
}

//! Gathers one u64 from every rank, in rank order.
template <communicator C>
std::vector<std::uint64_t> all_gather_value(const C& comm, std::uint64_t v) {
    const std::size_t n = comm.size();
    std::vector<std::uint64_t> out(n);
    std::vector<std::size_t> counts(n, sizeof v);
    comm.all_gather(std::as_bytes(std::span<const std::uint64_t>(&v, 1)), std::as_writable_bytes(std::span(out)), counts);
    return out;
}

//! Runs `f` (rank-local work that may throw) on this rank, then tells every rank
//! whether it succeeded, and throws on every rank when any failed: the failing
//! rank with its own message, the others naming it. `f` may contain collectives
//! only before anything in it can throw, or ranks fall out of step.
template <communicator C, class F>
void agree(const C& comm, F&& f) {
    std::string message;
    try {
        f();
    } catch (const error& e) {
        message = e.what();
    } catch (const std::exception& e) {
        message = std::string("childtune: ") + e.what();
    }
    const auto failed = all_gather_value(comm, message.empty() ? 0 : 1);
    if (!message.empty()) throw error(message + " [rank " + std::to_string(comm.rank()) + "]");
    for (std::size_t r = 0; r < failed.size(); ++r)
        if (failed[r])
            fail("rank " + std::to_string(r) + " of " + std::to_string(failed.size()) +
                 " failed (see its error); nothing was changed on rank " + std::to_string(comm.rank()));
}

} // namespace detail
} // namespace childtune
