#pragma once
//! \file
//! Umbrella header of the core library (standard library only): every public
//! header of include/childtune, so that one include is enough for any program on
//! host buffers (the optimizer, Child-Tuning_F and _D, Fisher accumulation and
//! top-p selection, mask sets, the state file, the data-parallel
//! sharded_optimizer and its communicator concept).
//!
//! Left out on purpose: the `detail/` directories (implementation, no stable
//! API) and the deprecated forwarding headers exec/compact_step.hpp and
//! update/state_buffers.hpp (each prints a `#pragma message`). distributed/ is in:
//! it needs nothing beyond the standard library (MPI and c10d live in the
//! adapters, <childtune/mpi.hpp> and <childtune/torch/communicator.hpp>).
//! tests/headers checks that this list stays complete and that each header
//! compiles on its own.

#include <childtune/concepts.hpp>
#include <childtune/config.hpp>
#include <childtune/distributed/communicator.hpp>
#include <childtune/distributed/local_ranks.hpp>
#include <childtune/distributed/fisher.hpp>
#include <childtune/distributed/shard.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/error.hpp>
#include <childtune/exec/backend.hpp>
#include <childtune/exec/cpu_executor.hpp>
#include <childtune/exec/cpu_isa.hpp>
#include <childtune/exec/cpu_runner.hpp>
#include <childtune/exec/cpu_step.hpp>
#include <childtune/exec/dispatch.hpp>
#include <childtune/exec/kernel.hpp>
#include <childtune/exec/memory_checks.hpp>
#include <childtune/exec/nonfinite.hpp>
#include <childtune/exec/quantised_state.hpp>
#include <childtune/exec/tensor_sum.hpp>
#include <childtune/exec/thread_count.hpp>
#include <childtune/instantiate.hpp>
#include <childtune/io/atomic_file.hpp>
#include <childtune/io/binary.hpp>
#include <childtune/io/integrity.hpp>
#include <childtune/io/policy_io.hpp>
#include <childtune/io/score_file.hpp>
#include <childtune/io/state_file.hpp>
#include <childtune/io/state_format.hpp>
#include <childtune/mask/any_mask.hpp>
#include <childtune/mask/any_mask_view.hpp>
#include <childtune/mask/bernoulli.hpp>
#include <childtune/mask/bit_mask.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/mask/filtered.hpp>
#include <childtune/mask/fixed.hpp>
#include <childtune/mask/gradient_reader.hpp>
#include <childtune/mask/keep_ratio.hpp>
#include <childtune/mask/magnitude.hpp>
#include <childtune/mask/mask_from.hpp>
#include <childtune/mask/mask_mode.hpp>
#include <childtune/mask/mask_set.hpp>
#include <childtune/mask/name_filter.hpp>
#include <childtune/mask/refreshed_fisher.hpp>
#include <childtune/mask/scored_mask.hpp>
#include <childtune/mask/tensor_info.hpp>
#include <childtune/numeric/blockwise8.hpp>
#include <childtune/numeric/half.hpp>
#include <childtune/numeric/lanes.hpp>
#include <childtune/numeric/rounding.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/optimizer/basic_optimizer.hpp>
#include <childtune/optimizer/summary.hpp>
#include <childtune/random/ars.hpp>
#include <childtune/random/philox.hpp>
#include <childtune/registry/gradient_step.hpp>
#include <childtune/registry/options.hpp>
#include <childtune/registry/registry.hpp>
#include <childtune/registry/state_layout.hpp>
#include <childtune/registry/step_plan.hpp>
#include <childtune/select/order_statistic.hpp>
#include <childtune/select/top_p.hpp>
#include <childtune/tensor_view.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/adamw.hpp>
#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/masking.hpp>
#include <childtune/update/rule_traits.hpp>
#include <childtune/update/sgd.hpp>
