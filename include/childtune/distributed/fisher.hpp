#pragma once
//! \file
//! Distributed Child-Tuning_D selection: each rank accumulates Fisher scores on
//! its shard of the training batches (mask/fisher.hpp), the per-rank sums are
//! added over ranks, and the global top-p cut (select/top_p.hpp) runs on the
//! total on every rank.
//!
//! Every rank gets the identical mask by construction: the ranks' scores are
//! gathered and added in rank order, ((s_0 + s_1) + s_2) + ..., a sum that
//! does not depend on the engine's reduction algorithm, and the selection is
//! deterministic. (An engine's all-reduce may add in an order of its own, even
//! a different one per rank.)
//!
//! Equality with one process over all batches holds where the sums are exact:
//! one process adds the batch terms one after another, t_0 + t_1 + ... + t_{N-1},
//! while ranks add their own batches and then the rank sums, a different
//! association. Floating-point addition is not associative, so in general the
//! scores (and, for elements near the cut, the mask) may differ in the last bit
//! from the single-process ones; they are equal whenever every partial sum is
//! representable, e.g. small integer-valued gradients with no clipping and N
//! unknown or a power of two. Per-tensor clipping is per batch, so it is the
//! same wherever a batch is accumulated.

#include <childtune/distributed/communicator.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/select/top_p.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace childtune {

//! What distributed_fisher_select() read from all ranks, besides the mask.
struct distributed_fisher_result {
    //! The masks, threshold and kept count (the same on every rank).
    top_p_result selection;
    //! Batches ended over all ranks (the N the scores average over when N is unknown).
    std::size_t batches = 0;
};

//! Sums the Fisher scores of `local` (this rank's batches) over all ranks, in
//! rank order, and selects the global top p of the totals. Collective; every
//! rank passes an accumulator with the same tensors (names and sizes, in order)
//! and the same options, or every rank throws childtune::error. With N known
//! (fisher_options::num_batches), the batches of all ranks together may not
//! exceed N. `chunk` bounds the receive buffer to world × chunk scores.
template <communicator C, score_element Score, class Backend = default_backend>
distributed_fisher_result distributed_fisher_select(const C& comm, const fisher_accumulator<Score>& local, double p,
                                                    selection_rule rule = selection_rule::percentile,
                                                    const Backend& backend = {}, std::size_t chunk = std::size_t{1} << 20) {
    const std::size_t world = comm.size();
    const std::vector<std::string> names = local.names();

    // Same tensors and options everywhere (a checksum), and the batch counts.
    detail::checksum64 h;
    for (const auto& name : names) {
        h.update_string(name);
        h.update_number(local.raw_scores(name).size());
    }
    const std::uint64_t options[3] = {local.options().num_batches, sizeof(Score), 0};
    h.update(options, sizeof options);
    const double clip = local.options().max_grad_norm;
    h.update(&clip, sizeof clip);
    const auto sums = detail::all_gather_value(comm, h.value());
    const auto batches = detail::all_gather_value(comm, local.batches());
    std::size_t total_batches = 0;
    for (const auto b : batches) total_batches += static_cast<std::size_t>(b);
    for (std::size_t r = 0; r < world; ++r)
        if (sums[r] != sums[0])
            detail::fail("distributed Fisher: rank " + std::to_string(r) +
                         " accumulated different tensors or options than rank 0 (checksums disagree)");
    if (total_batches == 0) detail::fail("distributed Fisher: no rank ended a batch");
    const std::size_t known = local.options().num_batches;
    if (known != 0 && total_batches > known)
        detail::fail("distributed Fisher: the ranks ended " + std::to_string(total_batches) + " batches, more than num_batches = " +
                     std::to_string(known));
    detail::check_fisher_batches("distributed Fisher", known, total_batches);

    // Rank-ordered sums, chunk by chunk.
    std::vector<std::vector<Score>> totals(names.size());
    std::vector<std::size_t> counts(world);
    std::vector<Score> received;
    for (std::size_t t = 0; t < names.size(); ++t) {
        const std::span<const Score> mine = local.raw_scores(names[t]);
        totals[t].resize(mine.size());
        for (std::size_t first = 0; first < mine.size(); first += chunk) {
            const std::size_t n = std::min(chunk, mine.size() - first);
            std::fill(counts.begin(), counts.end(), n * sizeof(Score));
            received.resize(n * world);
            comm.all_gather(std::as_bytes(mine.subspan(first, n)), std::as_writable_bytes(std::span(received)), counts);
            Score* out = totals[t].data() + first;
            std::copy_n(received.data(), n, out);
            for (std::size_t r = 1; r < world; ++r)
                for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + received[r * n + i];
        }
    }

    std::vector<std::string_view> views(names.begin(), names.end());
    std::vector<std::span<const Score>> spans(totals.begin(), totals.end());
    std::size_t total = 0;
    for (const auto& s : totals) total += s.size();
    detail::check_top_p_input(views, p, total);
    distributed_fisher_result result;
    result.batches = total_batches;
    if (known != 0)
        result.selection = detail::select_top_p<Score>(views, spans, p, rule, detail::identity_projection{}, backend);
    else {
        // As fisher_accumulator::select(): the sums divided by the batch count.
        const Score d = static_cast<Score>(total_batches);
        result.selection = detail::select_top_p<Score>(views, spans, p, rule, [d](Score v) { return v / d; }, backend);
    }
    return result;
}

} // namespace childtune
