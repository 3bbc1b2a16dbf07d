#pragma once
//! \file
//! The CPU executor: tensors in host memory, optimizer state in host buffers,
//! steps by the fused element pass (SIMD, chosen at run time) on an execution
//! backend (OpenMP or the calling thread). It moves data and runs kernels;
//! everything else is the registry's (registry/registry.hpp).

#include <childtune/concepts.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/exec/cpu_runner.hpp>
#include <childtune/exec/memory_checks.hpp>
#include <childtune/exec/nonfinite.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/random/detail/aes_cap.hpp>
#include <childtune/registry/gradient_step.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/step_plan.hpp>
#include <childtune/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace childtune::detail {

template <update_rule Rule>
class cpu_executor {
public:
    //! Which state layouts it can step (registry/state_layout.hpp).
    static constexpr bool supports_compact = true;
    //! It can keep 8-bit blockwise state (optimizer_options::storage).
    static constexpr bool supports_blockwise8 = true;
    //! State allocated for a step or read from a file, not yet in use.
    struct allocation {
        std::vector<state_request> requests;
        std::vector<std::vector<std::byte>> buffers;
        std::size_t bytes() const {
            std::size_t n = 0;
            for (const auto& b : buffers) n += b.size();
            return n;
        }
    };

    //! Chooses the kernels' instruction set now (exec/cpu_isa.hpp) and reads the
    //! cap on the masks' AES instructions (random/detail/aes_cap.hpp), so a
    //! malformed CHILDTUNE_MAX_ISA or CHILDTUNE_MAX_AES is an error of the
    //! optimizer's constructor, not of a step half done or of a kernel on an
    //! OpenMP thread.
    cpu_executor() {
        (void)cpu_kernel_isa();
        detail::check_aes_cap();
    }

    // ---- memory of the registered tensors -------------------------------------------------

    //! Binds the tensor the registry `r` registered last.
    template <parameter_element T>
    void bind_new(const registry<Rule>& r, const std::string& where, tensor_view<T> param, tensor_view<const T> grad) {
        check(r, where, param, grad, tensors_.size());
        tensors_.push_back({param, grad, &cpu_kernels<Rule, T>(), {}});
    }
    void pop() noexcept { tensors_.pop_back(); }
    //! Points tensor i at new memory of the same type and size.
    template <parameter_element T>
    void rebind(const registry<Rule>& r, const std::string& where, std::size_t i, tensor_view<T> param,
                tensor_view<const T> grad) {
        auto& t = tensors_[i];
        if (dtype_of<T> != t.param.type)
            fail(where + ": cannot rebind a " + std::string(dtype_name(t.param.type)) + " tensor to " +
                 std::string(dtype_name(dtype_of<T>)) + " memory");
        if (param.size() != t.param.size)
            fail(where + ": cannot rebind " + std::to_string(t.param.size) + " elements to " + std::to_string(param.size()));
        check(r, where, param, grad, i);
        if (grad.size() > 0 && !grad.data()) fail(where + ": null gradient data pointer");
        t.param = param;
        t.grad = grad;
    }
    const any_tensor_view& param(std::size_t i) const { return tensors_[i].param; }
    const any_tensor_view& grad(std::size_t i) const { return tensors_[i].grad; }

    // ---- state ------------------------------------------------------------------------------

    //! Zeros for each request, or the given host bytes (a file's); changes nothing.
    template <class... Context>
    allocation allocate(std::vector<state_request> requests, std::vector<std::vector<std::byte>> from = {},
                        const Context&...) const {
        allocation a{std::move(requests), std::move(from)};
        if (a.buffers.empty())
            for (const auto& r : a.requests)
                a.buffers.emplace_back(r.quantised ? blockwise8_buffer_bytes(r.elements, r.tensor_elements)
                                                   : r.elements * dtype_bytes(r.type));
        return a;
    }
    void adopt(allocation&& a) noexcept {
        for (std::size_t k = 0; k < a.requests.size(); ++k)
            tensors_[a.requests[k].tensor].state[a.requests[k].buffer] = std::move(a.buffers[k]);
    }
    //! Frees state buffers [from, max) of tensor i.
    void release(std::size_t i, std::size_t from) noexcept {
        for (std::size_t b = from; b < max_rule_state_buffers; ++b) tensors_[i].state[b] = std::vector<std::byte>();
    }
    std::size_t state_bytes() const {
        std::size_t n = 0;
        for (const auto& t : tensors_)
            for (const auto& s : t.state) n += s.size();
        return n;
    }
    std::span<const std::byte> state(std::size_t i, std::size_t b) const { return tensors_[i].state[b]; }

    // ---- steps ---------------------------------------------------------------------------------

    //! The first tensor (registration order) whose present gradient holds NaN or Inf.
    template <execution_backend E>
    std::optional<std::size_t> first_nonfinite(const registry<Rule>& r, const E& backend) const {
        std::vector<std::size_t> sizes(tensors_.size(), 0);
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            if (r.tensors()[i].has_gradient) sizes[i] = tensors_[i].grad.size;
        const auto items = cpu_work_items(sizes.data(), sizes.size());
        std::vector<unsigned char> bad(items.size(), 0);
        run_cpu_items(backend, items, [&](std::size_t w) {
            const auto& it = items[w];
            const auto& g = tensors_[it.job].grad;
            const std::size_t n = it.end - it.begin;
            bool ok = true;
            switch (g.type) {
            case dtype::float32: ok = all_finite(static_cast<const float*>(g.data) + it.begin, n); break;
            case dtype::float64: ok = all_finite(static_cast<const double*>(g.data) + it.begin, n); break;
            case dtype::bfloat16: ok = all_finite(static_cast<const bfloat16*>(g.data) + it.begin, n); break;
            case dtype::float16: ok = all_finite(static_cast<const float16*>(g.data) + it.begin, n); break;
            }
            bad[w] = ok ? 0 : 1;
        });
        for (std::size_t w = 0; w < items.size(); ++w)
            if (bad[w]) return items[w].job;
        return std::nullopt;
    }

    //! The gradients of `tensors` (registered views), widened to float on the
    //! host, for gradient-driven mask policies (registry/gradient_step.hpp).
    template <class... Context>
    std::vector<std::vector<float>> read_gradients(const registry<Rule>&, std::span<const std::size_t> tensors,
                                                   const Context&...) const {
        std::vector<std::vector<float>> out;
        out.reserve(tensors.size());
        for (const auto i : tensors) out.push_back(widen_gradient(tensors_[i].grad.data, tensors_[i].grad.type, tensors_[i].grad.size));
        return out;
    }

    //! Runs a committed plan.
    template <execution_backend E>
    void run(const registry<Rule>& r, const step_plan<Rule>& plan, const E& backend) {
        std::vector<cpu_job<Rule>> jobs;
        jobs.reserve(plan.jobs.size());
        for (const auto& j : plan.jobs) {
            auto& t = tensors_[j.tensor];
            const auto& rec = r.tensors()[j.tensor];
            cpu_job<Rule> c;
            c.kernels = t.kernels;
            c.param = t.param.data;
            c.grad = t.grad.data;
            for (std::size_t b = 0; b < max_rule_state_buffers; ++b) c.state[b] = t.state[b].empty() ? nullptr : t.state[b].data();
            c.buffers = j.buffers;
            c.size = t.param.size;
            c.double_state = rec.state_type == dtype::float64;
            c.kept_before = j.compact ? rec.kept_before.data() : nullptr;
            c.quantised = rec.quantised;
            c.param_bytes = dtype_bytes(t.param.type);
            c.mask = &j.mask;
            c.constants_f = j.constants_f;
            c.constants_d = j.constants_d;
            jobs.push_back(c);
        }
        run_cpu_jobs(jobs, r.options().masking, backend);
    }

private:
    struct bound_tensor {
        any_tensor_view param;
        any_tensor_view grad;
        const cpu_kernel_table<Rule>* kernels;
        std::vector<std::byte> state[max_rule_state_buffers];
    };

    template <class T>
    void check(const registry<Rule>& r, const std::string& where, tensor_view<T> param, tensor_view<const T> grad,
               std::size_t self) const {
        if (param.size() != grad.size())
            fail(where + ": gradient has " + std::to_string(grad.size()) + " elements, parameter has " +
                 std::to_string(param.size()));
        std::vector<bound_parameter> others;
        for (std::size_t i = 0; i < tensors_.size(); ++i)
            if (i != self && tensors_[i].param.size > 0)
                others.push_back({r.tensors()[i].name, tensors_[i].param.data, tensors_[i].param.size * dtype_bytes(tensors_[i].param.type)});
        check_tensor_memory(where, dtype_of<std::remove_const_t<T>>, param.size(), sizeof(T), param.data(), grad.data(), others);
    }

    std::vector<bound_tensor> tensors_;
};

} // namespace childtune::detail
