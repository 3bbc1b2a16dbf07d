#pragma once
//! \file
//! The fused Child-Tuning step on a Thrust system, many tensors per launch.
//!
//! Each element is computed by the scalar definition of the update rule (the
//! `apply` the CPU kernels vectorise), so on the CPP, OMP and TBB systems a step
//! gives the core CPU path's results bit for bit; keep decisions come from the
//! same mask views (Bernoulli draws for Child-Tuning_F, packed bits for fixed masks).
//!
//! Multi-tensor batching, as fused GPU optimizers do it: the tensors of a batch
//! share one index space in which each tensor starts at a multiple of
//! `batch_alignment` elements; one `for_each` covers the whole space and each
//! index finds its tensor by binary search in a small descriptor table that is
//! copied to the system once per call. A model's hundreds of small tensors take one
//! launch, not one each, and the threads of a GPU block almost always agree on
//! their tensor.

#include <childtune/config.hpp>
#include <childtune/error.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/thrust/memory.hpp>
#include <childtune/thrust/batch.hpp>
#include <childtune/thrust/phase.hpp>
#include <childtune/thrust/slot_search.hpp>
#include <childtune/thrust/system.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! Tensors of a batch start at multiples of this many elements in the batch's
//! index space (a GPU block's worth, so a block rarely spans two tensors).
inline constexpr std::uint64_t batch_alignment = 256;
static_assert(batch_alignment % detail::octet_group == 0, "a thread's 128-element group must not straddle two tensors");

//! One tensor of a batched step, as the caller describes it. All pointers address
//! memory of the execution policy's system (raw device pointers; a
//! `thrust::device_ptr` gives its own with `.get()`, a `thrust::device_vector`
//! through make_tensor_step below); `state[b]` for b < the rule's buffer
//! count are read and written, the others are ignored.
template <class P, class S, class MaskView>
struct tensor_step {
    std::string_view name;  //!< named in errors
    //! The parameter's elements.
    P* param = nullptr;
    //! The gradient's elements.
    const P* grad = nullptr;
    //! State buffers (moments, momentum), of which the rule uses the first few.
    S* state[childtune::detail::max_rule_state_buffers] = {};
    //! Elements of the tensor.
    std::uint64_t size = 0;
    MaskView mask{};        //!< keep decisions of this tensor at this step
    std::uint64_t step = 1; //!< 1-based count of this tensor's steps, including this one
    bool fresh_state = false; //!< the state was just zero-initialised
};

namespace detail {

template <class T, class A>
void require_same_size(std::string_view name, const char* what, const ::thrust::device_vector<T, A>& v, std::uint64_t size) {
    if (v.size() != size)
        childtune::detail::fail("thrust step: tensor '" + std::string(name) + "': " + what + " has " +
                                std::to_string(v.size()) + " elements, the parameter has " + std::to_string(size));
}

//! The state type a stateless step uses: the rule computes in it.
template <class P>
using default_state_t = std::conditional_t<std::is_same_v<P, double>, double, float>;

} // namespace detail

//! tensor_step over `thrust::device_vector` storage, for rules without state
//! (SGD without momentum), with one state buffer (SGD with momentum) or two
//! (Adam, AdamW). The vectors must outlive the step; a gradient or state vector
//! whose size is not the parameter's is rejected here, naming the tensor.
template <class MaskView, class P, class AP, class AG>
tensor_step<P, detail::default_state_t<P>, MaskView>
make_tensor_step(std::string_view name, ::thrust::device_vector<P, AP>& param, const ::thrust::device_vector<P, AG>& grad,
                 MaskView mask, std::uint64_t step, bool fresh_state) {
    detail::require_same_size(name, "the gradient", grad, param.size());
    return {name, ::thrust::raw_pointer_cast(param.data()), ::thrust::raw_pointer_cast(grad.data()), {},
            param.size(), mask, step, fresh_state};
}
//! The same with one state buffer (momentum SGD), checked against the parameter's size.
template <class MaskView, class P, class S, class AP, class AG, class AS>
tensor_step<P, S, MaskView> make_tensor_step(std::string_view name, ::thrust::device_vector<P, AP>& param,
                                             const ::thrust::device_vector<P, AG>& grad,
                                             ::thrust::device_vector<S, AS>& state0, MaskView mask, std::uint64_t step,
                                             bool fresh_state) {
    detail::require_same_size(name, "the gradient", grad, param.size());
    detail::require_same_size(name, "state buffer 0", state0, param.size());
    return {name, ::thrust::raw_pointer_cast(param.data()), ::thrust::raw_pointer_cast(grad.data()),
            {::thrust::raw_pointer_cast(state0.data()), nullptr}, param.size(), mask, step, fresh_state};
}
//! The same with two state buffers (Adam, AdamW), checked against the parameter's size.
template <class MaskView, class P, class S, class AP, class AG, class AS0, class AS1>
tensor_step<P, S, MaskView> make_tensor_step(std::string_view name, ::thrust::device_vector<P, AP>& param,
                                             const ::thrust::device_vector<P, AG>& grad,
                                             ::thrust::device_vector<S, AS0>& state0,
                                             ::thrust::device_vector<S, AS1>& state1, MaskView mask,
                                             std::uint64_t step, bool fresh_state) {
    detail::require_same_size(name, "the gradient", grad, param.size());
    detail::require_same_size(name, "state buffer 0", state0, param.size());
    detail::require_same_size(name, "state buffer 1", state1, param.size());
    return {name, ::thrust::raw_pointer_cast(param.data()), ::thrust::raw_pointer_cast(grad.data()),
            {::thrust::raw_pointer_cast(state0.data()), ::thrust::raw_pointer_cast(state1.data())}, param.size(), mask,
            step, fresh_state};
}


//! One fused step of `Rule` over every tensor in `tensors`, in one launch on
//! `policy` (e.g. `thrust::cuda::par.on(stream)`, `thrust::omp::par`,
//! `thrust::device`). Every tensor uses the same hyperparameters and masking
//! options; steps of several groups are several calls.
//!
//! Checked before anything runs (a childtune::error names the tensor, and no
//! memory is written): options, null pointers, missing state buffers, more than
//! 2^32 tensors, and (unless `check` is off) pointers to memory the device system
//! cannot use, such as host memory in a CUDA build. A policy of another Thrust
//! system does not compile.
template <class Rule, class P, class S, class MaskView, class Policy>
void step(const Policy& policy, const typename Rule::options& options, masking_options masking,
          std::span<const tensor_step<P, S, MaskView>> tensors, memory_check check = memory_check::on) {
    detail::require_device_policy<Policy>();
    Rule::validate(options, "thrust step");
    const std::size_t buffers = Rule::state_buffers(options);
    if (tensors.size() >= (std::size_t{1} << 32))
        childtune::detail::fail("thrust step: " + std::to_string(tensors.size()) + " tensors in one batch (at most 2^32 - 1)");

    std::vector<detail::tensor_slot<Rule, P, S, MaskView>> slots;
    slots.reserve(tensors.size());
    std::uint64_t extent = 0, blocks = 0;
    for (const auto& t : tensors) {
        if (t.size == 0) continue;
        const auto context = [&] { return "thrust step: tensor '" + std::string(t.name) + "'"; };
        const auto reject = [&](const std::string& problem) { childtune::detail::fail(context() + ": " + problem); };
        // First: every later check and the batch's index space do arithmetic
        // on the size.
        if (t.size > childtune::detail::max_tensor_elements<P>)
            reject(std::to_string(t.size) + " elements exceed the address space (corrupt or made-up size)");
        if (!t.param || !t.grad) reject("null parameter or gradient pointer");
        // Elements are stepped in parallel: a gradient aliasing its parameter
        // would be read after other threads overwrote it.
        if (childtune::detail::ranges_overlap(t.param, t.size * sizeof(P), t.grad, t.size * sizeof(P)))
            reject("parameter and gradient memory overlap");
        for (std::size_t b = 0; b < buffers; ++b)
            if (!t.state[b]) reject("state buffer " + std::to_string(b) + " is null");
        if (t.step == 0) reject("step counts start at 1");
        if constexpr (std::is_same_v<MaskView, fixed_view>) {
            if (!t.mask.words()) reject("the fixed mask has no words");
            if (t.mask.offset() > t.mask.mask_size() || t.size > t.mask.mask_size() - t.mask.offset())
                reject("the fixed mask has " + std::to_string(t.mask.mask_size()) + " elements, the view needs " +
                       (t.mask.offset() <= UINT64_MAX - t.size
                            ? std::to_string(t.mask.offset() + t.size)
                            : std::to_string(t.mask.offset()) + " + " + std::to_string(t.size)));
        }
        if (check == memory_check::on) {
            detail::require_system_memory(t.param, context, "the parameter");
            detail::require_system_memory(t.grad, context, "the gradient");
            for (std::size_t b = 0; b < buffers; ++b) detail::require_system_memory(t.state[b], context, "a state buffer");
            if constexpr (std::is_same_v<MaskView, fixed_view>)
                detail::require_system_memory(t.mask.words(), context, "the fixed mask");
        }
        const S keep = static_cast<S>(t.mask.keep_probability());
        detail::tensor_slot<Rule, P, S, MaskView> slot{t.param, t.grad, {}, t.size, extent, blocks, t.mask,
                                                       Rule::template prepare<S>(options, t.step, t.fresh_state),
                                                       childtune::detail::make_mask_plan<bool, S>(true, false, masking, keep, keep != S(1))};
        for (std::size_t b = 0; b < childtune::detail::max_rule_state_buffers; ++b) slot.state[b] = t.state[b];
        slots.push_back(slot);
        blocks += (t.size + 63) / 64;
        // The batch's index space is 64-bit: many huge tensors could wrap it, and
        // a wrapped extent silently skips tensors.
        const std::uint64_t padded = (t.size + batch_alignment - 1) / batch_alignment * batch_alignment;
        if (padded > UINT64_MAX - extent)
            reject("the batch's index space (" + std::to_string(extent) + " elements before this tensor) overflows 64 bits");
        extent += padded;
    }
    if (slots.empty()) return;

    const bool ran = childtune::detail::with_state_buffers<Rule>(buffers, [&](auto count) {
        if constexpr (childtune::detail::rule_reduction_count<Rule>() > 0)
            detail::run_phase<Policy, Rule, decltype(count)::value>(policy, slots, blocks);
        detail::run_batch<Policy, Rule, decltype(count)::value>(policy, slots, extent);
    });
    if (!ran)
        childtune::detail::fail("thrust step: the '" + std::string(Rule::name) + "' rule asks for " +
                            std::to_string(buffers) + " state buffers");
}

//! The same for a container of tensor_step (std::vector, std::array).
template <class Rule, class P, class S, class MaskView, class Policy>
void step(const Policy& policy, const typename Rule::options& options, masking_options masking,
          const std::vector<tensor_step<P, S, MaskView>>& tensors, memory_check check = memory_check::on) {
    step<Rule, P, S, MaskView>(policy, options, masking, std::span<const tensor_step<P, S, MaskView>>(tensors), check);
}

} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
