#pragma once
//! \file
//! The LibTorch optimizers' core: the core basic_optimizer (groups, mask
//! policies, steps, state file) on the LibTorch executor (torch/executor.hpp).
//! It maps LibTorch tensors to the registry's tensors and nothing else; the
//! `torch::optim::Optimizer` face is torch/optimizer.hpp.

#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/optimizer/basic_optimizer.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/torch/archive.hpp>
#include <childtune/torch/executor.hpp>
#include <childtune/torch/tensor.hpp>

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace childtune::torch {

//! The core optimizer over LibTorch tensors (basic_optimizer on the LibTorch
//! executor): what child_tuning_optimizer drives; users reach it through core().
template <update_rule Rule>
class optimizer_core : public basic_optimizer<Rule, detail::executor<Rule>> {
    using base = basic_optimizer<Rule, detail::executor<Rule>>;

public:
    //! An optimizer with no groups; `mask` and `options` as basic_optimizer's.
    optimizer_core(any_mask mask, optimizer_options options) : base(std::move(mask), options) {}

    //! Registers a checked parameter (tensor.hpp), stepped where it lives.
    void add_parameter(std::size_t group, std::string name, const at::Tensor& p, bool force_aten) {
        auto& r = this->registry_;
        const auto type = *element_type(p.scalar_type());
        const auto n = static_cast<std::size_t>(p.numel());
        const std::uint32_t key = r.check_new_tensor(group, name, type, n, n, 0, std::nullopt);
        const auto where = detail::placement_of<Rule>(p, force_aten);
        check_placement(r.describe(group, name), where);
        r.add_tensor(group, std::move(name), key, type, n, n, 0, false);
        try {
            this->executor_.bind_new(p, where);
        } catch (...) {
            r.pop_tensor();
            throw;
        }
    }
    //! This step's gradient of tensor i (undefined: absent, the tensor is skipped).
    void set_gradient(std::size_t i, at::Tensor grad) {
        this->registry_.tensor(i).has_gradient = grad.defined();
        this->executor_.set_gradient(i, std::move(grad));
    }
    //! Sends every tensor through the ATen path (or back to where it lives).
    void force_aten_path(const std::vector<at::Tensor>& params, bool on) {
        for (std::size_t i = 0; i < params.size(); ++i)
            check_placement(this->registry_.describe(this->registry_.tensors()[i].group, this->registry_.tensors()[i].name),
                          detail::placement_of<Rule>(params[i], on));
        for (std::size_t i = 0; i < params.size(); ++i) this->executor_.set_placement(i, detail::placement_of<Rule>(params[i], on));
    }

    //! One step over every registered tensor (`backend` runs the CPU tensors' kernels).
    step_result step(const openmp_backend& backend) { return this->step_with(backend); }

    //! Writes the core state file (io/state_file.hpp), state read back to the host.
    void save(std::ostream& out) const {
        this->save_with(out, childtune::detail::masks_of(this->registry_),
                        [&](std::size_t i, std::size_t b) { return this->executor_.host_state(i, b); });
    }
    //! Loads a state file; `extra` (a 0.1 archive's ATen state, torch/archive.hpp)
    //! is applied over it.
    void load(std::istream& in, const std::vector<legacy_tensor_state>& extra, const load_options& options = {}) {
        this->load_with(in, options, [&](auto& staged) {
            for (const auto& e : extra) {
                auto& t = staged.next.tensors()[e.tensor];
                if (t.steps != 0 || t.buffers != 0)
                    childtune::detail::fail("optimizer archive is corrupt: tensor '" + t.name +
                                            "' has state both in the core file and on the ATen path");
                t.steps = e.steps;
                t.buffers = e.state.size();
                for (std::size_t b = 0; b < e.state.size(); ++b) {
                    const at::Tensor s = e.state[b].contiguous().view({-1});
                    if (static_cast<std::size_t>(s.numel()) != t.elements)
                        childtune::detail::fail("optimizer archive: state of '" + t.name + "' has " +
                                                std::to_string(s.numel()) + " elements, the parameter " +
                                                std::to_string(t.elements));
                    const at::Tensor typed = s.to(t.state_type == dtype::float64 ? at::kDouble : at::kFloat).cpu();
                    std::vector<std::byte> bytes(static_cast<std::size_t>(typed.numel()) * typed.element_size());
                    if (!bytes.empty()) std::memcpy(bytes.data(), typed.data_ptr(), bytes.size());
                    staged.requests.push_back({e.tensor, b, t.elements, t.state_type});
                    staged.buffers.push_back(std::move(bytes));
                }
            }
            check_loaded_placement(staged.next);
        });
    }

private:
    //! Compact Child-Tuning_D state and 8-bit blockwise state are kept for host
    //! tensors (the fused kernels) only.
    void check_placement(const std::string& where, detail::placement p) const {
        if (p == detail::placement::host) return;
        if (this->registry_.options().compact_fixed_state)
            childtune::detail::fail(where + ": compact Child-Tuning_D state is kept for CPU tensors on the fused path only");
        if (this->registry_.options().storage == state_storage::blockwise8)
            childtune::detail::fail(where + ": 8-bit blockwise state (state_storage::blockwise8) is kept for CPU tensors "
                                    "on the fused path only");
    }
    //! The same for a file's state: its compact or 8-bit buffers can only go to
    //! tensors the fused kernels step (checked before anything is replaced).
    void check_loaded_placement(const childtune::detail::registry<Rule>& next) const {
        for (std::size_t i = 0; i < next.tensor_count(); ++i) {
            const auto& t = next.tensors()[i];
            if (t.buffers == 0 || this->executor_.where(i) == detail::placement::host) continue;
            const std::string where = next.describe(t.group, t.name);
            if (t.quantised)
                childtune::detail::fail(where + ": the file holds 8-bit blockwise state, which is kept for CPU tensors "
                                        "on the fused path only");
            if (t.compact)
                childtune::detail::fail(where + ": the file holds compact Child-Tuning_D state, which is kept for CPU "
                                        "tensors on the fused path only");
        }
    }
};

} // namespace childtune::torch
