#pragma once
//! \file
//! The part of a step that shows gradient-driven mask policies (magnitude
//! masks, refreshed Fisher masks, any gradient_reading_policy) this step's
//! gradients, written once for every executor.
//!
//! After the NaN/Inf scan, the executor copies the gradients of the tensors
//! that use such a policy to the host, widened to float (its
//! `read_gradients`); in a sharded optimizer each rank holds a slice of every
//! tensor, and the slices are all-gathered through the communicator, so every
//! rank shows its policies the same whole tensors. Each policy's `observe`
//! then computes its next value on the side: nothing is changed until the step
//! is committed (commit_policies, noexcept).

#include <childtune/error.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/gradient_reader.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/step_plan.hpp>
#include <childtune/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune::detail {

//! How the ranks of a sharded optimizer exchange their gradient slices:
//! `all_gather(mine, all, counts)` as communicator::all_gather.
struct gradient_exchange {
    std::size_t rank = 0;
    std::size_t world = 1;
    std::function<void(std::span<const std::byte>, std::span<std::byte>, std::span<const std::size_t>)> all_gather;
};

//! `n` gradient elements of type `type` at `data`, widened to float (double
//! rounded to nearest).
inline std::vector<float> widen_gradient(const void* data, dtype type, std::size_t n) {
    std::vector<float> out(n);
    switch (type) {
    case dtype::float32: if (n) std::memcpy(out.data(), data, n * sizeof(float)); break;
    case dtype::float64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<const double*>(data)[i]); break;
    case dtype::bfloat16: for (std::size_t i = 0; i < n; ++i) out[i] = widen<float>(static_cast<const bfloat16*>(data)[i]); break;
    case dtype::float16: for (std::size_t i = 0; i < n; ++i) out[i] = widen<float>(static_cast<const float16*>(data)[i]); break;
    }
    return out;
}

//! Whether any policy in use reads gradients.
template <class Rule>
bool uses_gradient_policies(const registry<Rule>& r) {
    for (std::size_t g = 0; g < r.group_count(); ++g)
        if (const any_mask* m = r.mask_of(g); m && m->reads_gradients()) return true;
    return false;
}

//! The whole logical tensors of `tensors` from this rank's slices (`slices[k]`:
//! the registered view's values); across ranks through `x`.
template <class Rule>
std::vector<std::vector<float>> whole_gradients(const registry<Rule>& r, const std::vector<std::size_t>& tensors,
                                                std::vector<std::vector<float>> slices, const gradient_exchange* x) {
    if (!x || x->world <= 1) {
        for (std::size_t k = 0; k < tensors.size(); ++k) {
            const auto& t = r.tensors()[tensors[k]];
            if (t.elements != t.logical_size)
                fail(r.describe(t.group, t.name) + ": its mask policy chooses from whole tensors' gradients, but only a slice of " +
                     std::to_string(t.elements) + " of its " + std::to_string(t.logical_size) +
                     " elements is registered here (use sharded_optimizer, which gathers the slices)");
        }
        return slices;
    }
    // Where each rank's slices sit, then their values, in rank order.
    const std::size_t world = x->world, n = tensors.size();
    std::vector<std::uint64_t> where(2 * n);
    for (std::size_t k = 0; k < n; ++k) {
        where[2 * k] = r.tensors()[tensors[k]].offset;
        where[2 * k + 1] = r.tensors()[tensors[k]].elements;
    }
    std::vector<std::uint64_t> all_where(2 * n * world);
    const std::vector<std::size_t> header_counts(world, 2 * n * sizeof(std::uint64_t));
    x->all_gather(std::as_bytes(std::span<const std::uint64_t>(where)), std::as_writable_bytes(std::span<std::uint64_t>(all_where)),
                  header_counts);
    std::vector<std::size_t> counts(world, 0);
    for (std::size_t q = 0; q < world; ++q)
        for (std::size_t k = 0; k < n; ++k) counts[q] += static_cast<std::size_t>(all_where[(q * n + k) * 2 + 1]) * sizeof(float);
    std::vector<float> mine;
    for (const auto& s : slices) mine.insert(mine.end(), s.begin(), s.end());
    std::size_t total = 0;
    for (const auto c : counts) total += c;
    std::vector<float> all(total / sizeof(float));
    x->all_gather(std::as_bytes(std::span<const float>(mine)), std::as_writable_bytes(std::span<float>(all)), counts);
    std::vector<std::vector<float>> whole(n);
    for (std::size_t k = 0; k < n; ++k) whole[k].resize(r.tensors()[tensors[k]].logical_size);
    std::vector<std::size_t> covered(n, 0);
    std::size_t at = 0;
    for (std::size_t q = 0; q < world; ++q)
        for (std::size_t k = 0; k < n; ++k) {
            const auto offset = static_cast<std::size_t>(all_where[(q * n + k) * 2]);
            const auto elements = static_cast<std::size_t>(all_where[(q * n + k) * 2 + 1]);
            if (offset > whole[k].size() || elements > whole[k].size() - offset)
                fail("gradient-driven mask: rank " + std::to_string(q) + " holds a slice of tensor '" +
                     r.tensors()[tensors[k]].name + "' outside it (ranks registered different tensors?)");
            std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(at), elements, whole[k].begin() + static_cast<std::ptrdiff_t>(offset));
            covered[k] += elements;
            at += elements;
        }
    for (std::size_t k = 0; k < n; ++k)
        if (covered[k] != whole[k].size())
            fail("gradient-driven mask: the ranks' slices of tensor '" + r.tensors()[tensors[k]].name + "' cover " +
                 std::to_string(covered[k]) + " of its " + std::to_string(whole[k].size()) + " elements");
    return whole;
}

//! Each gradient-reading policy's next value from this step's gradients:
//! `read(tensors)` returns the listed tensors' registered views widened to
//! float (the executor's read_gradients). Changes nothing.
template <class Rule, class Read>
std::vector<policy_update> observe_gradients(const registry<Rule>& r, Read&& read, const gradient_exchange* x) {
    std::vector<const any_mask*> policies;
    for (std::size_t g = 0; g < r.group_count(); ++g)
        if (const any_mask* m = r.mask_of(g); m && m->reads_gradients() &&
                                              std::find(policies.begin(), policies.end(), m) == policies.end())
            policies.push_back(m);
    std::vector<std::size_t> tensors;
    for (std::size_t i = 0; i < r.tensor_count(); ++i) {
        const auto& t = r.tensors()[i];
        const any_mask* m = r.mask_of(t.group);
        if (t.has_gradient && m && m->reads_gradients()) tensors.push_back(i);
    }
    std::vector<std::vector<float>> whole = whole_gradients(r, tensors, read(std::span<const std::size_t>(tensors)), x);
    std::vector<policy_update> out;
    for (const any_mask* m : policies) {
        std::vector<tensor_info> infos;
        std::vector<std::span<const float>> values;
        for (std::size_t k = 0; k < tensors.size(); ++k) {
            if (r.mask_of(r.tensors()[tensors[k]].group) != m) continue;
            tensor_info info = r.info(tensors[k]);
            info.offset = 0;
            info.elements = info.size;
            infos.push_back(info);
            values.emplace_back(whole[k]);
        }
        if (infos.empty()) continue; // no tensor of the policy has a gradient at this step
        const gradient_reader reader(std::move(infos), std::move(values));
        out.push_back({m, m->observe(reader, r.step_count())});
    }
    return out;
}

//! Puts the policies the applied step used into the registry.
template <class Rule>
void commit_policies(registry<Rule>& r, std::vector<policy_update>& updates) noexcept {
    for (auto& u : updates) r.replace_policy(u.old, u.next);
}

} // namespace childtune::detail
