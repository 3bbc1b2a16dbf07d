// The sharded optimizer at world size 1 (single_process_communicator) against
// the core optimizer, the slice arithmetic, the per-rank state file and the
// distributed Fisher selection. Larger worlds: tests/adapters/mpi.cpp.

#include "distributed/model.hpp"
#include "support/error_matcher.hpp"

#include <childtune/distributed/communicator.hpp>
#include <childtune/distributed/fisher.hpp>
#include <childtune/distributed/shard.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>

using namespace childtune;
using dist_test::model;
using test_support::error_with;

static_assert(communicator<single_process_communicator>);

TEST_CASE("shard_of: contiguous slices that differ by at most one element", "[distributed]") {
    CHECK(shard_of(842, 3, 0) == shard_range{0, 281});
    CHECK(shard_of(842, 3, 1) == shard_range{281, 562});
    CHECK(shard_of(842, 3, 2) == shard_range{562, 842});
    CHECK(shard_of(842, 1, 0) == shard_range{0, 842});
    CHECK(shard_of(2, 3, 2) == shard_range{2, 2}); // fewer elements than ranks
    for (std::uint64_t total : {0u, 1u, 5u, 64u, 1000u, 1001u})
        for (std::size_t world = 1; world <= 7; ++world) {
            std::uint64_t next = 0, smallest = total, largest = 0;
            for (std::size_t r = 0; r < world; ++r) {
                const auto s = shard_of(total, world, r);
                REQUIRE(s.begin == next);
                next = s.end;
                smallest = std::min(smallest, s.size());
                largest = std::max(largest, s.size());
            }
            CHECK(next == total);
            CHECK(largest - smallest <= 1);
        }
    CHECK_THROWS_MATCHES(shard_of(10, 2, 2), error, error_with("rank 2 is not in a world of 2"));
    CHECK_THROWS_MATCHES(shard_of(10, 0, 0), error, error_with("world of 0"));
}

TEST_CASE("intersect: a tensor's part of a slice, relative to the tensor", "[distributed]") {
    CHECK(intersect({281, 562}, 0, 301) == shard_range{281, 301});
    CHECK(intersect({281, 562}, 301, 501) == shard_range{0, 200});
    CHECK(intersect({281, 562}, 501, 831) == shard_range{0, 61});
    CHECK(intersect({281, 562}, 831, 842).size() == 0);
}

TEST_CASE("single_process_communicator: the collectives of one rank", "[distributed]") {
    const single_process_communicator c;
    std::vector<double> d{1.5, 2.5};
    c.all_reduce_sum(std::span(d));
    CHECK(d == std::vector<double>{1.5, 2.5});
    const auto v = detail::all_gather_value(c, 42);
    CHECK(v == std::vector<std::uint64_t>{42});
    std::vector<std::byte> out(3);
    const std::size_t wrong[] = {2};
    CHECK_THROWS_MATCHES(c.all_gather(std::as_bytes(std::span(d)).first(3), out, wrong), error, error_with("mismatched counts"));
    CHECK_THROWS_MATCHES(c.broadcast(out, 1), error, error_with("broadcast from rank 1 of 1"));
}

TEST_CASE("sharded_optimizer at world size 1 equals the core optimizer bit for bit", "[distributed]") {
    const single_process_communicator comm;
    const auto ct_d = fixed{dist_test::single_process_fisher(4, 0.3).masks};
    for (const mask_mode& mode : {mask_mode{dense{}}, mask_mode{bernoulli{0.3, 7}}, mask_mode{ct_d}}) {
        CAPTURE(mode.index());
        std::size_t ref_bytes = 0, bytes = 0;
        const model ref = dist_test::run_reference(mode, 5, &ref_bytes);
        const model got = dist_test::run_sharded(comm, mode, 5, &bytes);
        CHECK(same_bits(ref, got));
        CHECK(bytes == ref_bytes);
        CHECK(bytes == 8 * (301 + 200 + 11) + 16 * 330); // fp32 state for float/bf16, fp64 for double
        CHECK_FALSE(same_bits(ref, model{})); // the run moved the parameters
    }
}

TEST_CASE("sharded_optimizer: save and load resume bit-identically", "[distributed]") {
    const single_process_communicator comm;
    const mask_mode mode = bernoulli{0.3, 11};
    const model ref = dist_test::run_reference(mode, 6);

    model m;
    std::stringstream file;
    {
        sharded_optimizer<adamw, single_process_communicator> opt(comm, mode);
        m.attach(opt, dist_test::test_options());
        for (std::uint64_t s = 0; s < 3; ++s) {
            m.gradients(s);
            opt.step();
        }
        opt.save(file);
    }
    sharded_optimizer<adamw, single_process_communicator> resumed(comm, dense{}); // the file restores the mode
    m.attach(resumed, adamw::options{});                                          // and the group options
    resumed.load(file);
    CHECK(resumed.step_count() == 3);
    CHECK(resumed.mask().index() == 1);
    for (std::uint64_t s = 3; s < 6; ++s) {
        m.gradients(s);
        resumed.step();
    }
    CHECK(same_bits(ref, m));
}

TEST_CASE("sharded_optimizer: a state file of another parameter set is rejected", "[distributed]") {
    const single_process_communicator comm;
    model m;
    std::stringstream file;
    {
        sharded_optimizer<adamw, single_process_communicator> opt(comm);
        m.attach(opt);
        m.gradients(0);
        opt.step();
        opt.save(file);
    }
    std::vector<float> extra(3), gextra(3);
    sharded_optimizer<adamw, single_process_communicator> other(comm);
    m.attach(other);
    other.add_parameter(0, "layer.2.weight", extra, gextra);
    CHECK_THROWS_MATCHES(other.load(file), error, error_with("different parameter set"));
    CHECK(other.step_count() == 0);
    CHECK(other.state_bytes() == 0);

    std::stringstream garbage("not a state file");
    sharded_optimizer<adamw, single_process_communicator> third(comm);
    m.attach(third);
    CHECK_THROWS_AS(third.load(garbage), error);
    CHECK_THROWS_MATCHES(third.load(std::string("no/such/dir/state.bin")), error, error_with("cannot open"));
}

TEST_CASE("sharded_optimizer: registration rules", "[distributed]") {
    const single_process_communicator comm;
    model m;
    sharded_optimizer<adamw, single_process_communicator> opt(comm);
    m.attach(opt);
    CHECK(opt.total_elements() == m.elements());
    CHECK(opt.local_range() == shard_range{0, m.elements()});
    CHECK_THROWS_MATCHES(opt.add_parameter(0, "layer.0.weight", m.w0, m.g0), error, error_with("registered twice"));
    CHECK_THROWS_MATCHES(opt.save(std::string("unused")), error, error_with("before the first step"));
    m.gradients(0);
    opt.step();
    std::vector<float> extra(3), gextra(3);
    CHECK_THROWS_MATCHES(opt.add_parameter(0, "late", extra, gextra), error, error_with("define the slices"));
    CHECK_THROWS_MATCHES((sharded_optimizer<adamw, single_process_communicator>(comm, dense{}, {.compact_fixed_state = true})),
                         error, error_with("compact_fixed_state"));
    CHECK_THROWS_MATCHES((sharded_optimizer<adamw, single_process_communicator>(
                             comm, dense{}, {.storage = state_storage::blockwise8})),
                         error, error_with("8-bit blockwise state is not supported"));
    // A communicator that reports a rank outside its world.
    struct misnumbered : single_process_communicator {
        std::size_t rank() const { return 3; }
        std::size_t size() const { return 2; }
    };
    const misnumbered bad;
    CHECK_THROWS_MATCHES((sharded_optimizer<adamw, misnumbered>(bad)), error, error_with("rank 3 of a world of 2"));
}

TEST_CASE("sharded_optimizer: a non-finite gradient raises or skips", "[distributed]") {
    const single_process_communicator comm;
    model m;
    sharded_optimizer<adamw, single_process_communicator> opt(comm);
    m.attach(opt);
    m.gradients(0);
    m.g2[100] = std::numeric_limits<double>::quiet_NaN();
    const model before = m;
    CHECK_THROWS_MATCHES(opt.step(), error, error_with("tensor 'layer.1.weight': gradient holds NaN"));
    CHECK(same_bits(before, m));
    optimizer_options skip;
    skip.on_nonfinite = nonfinite_policy::skip;
    sharded_optimizer<adamw, single_process_communicator> lenient(comm, dense{}, skip);
    m.attach(lenient);
    const auto r = lenient.step();
    CHECK_FALSE(r.applied);
    CHECK(r.nonfinite_tensor == "layer.1.weight");
    CHECK(lenient.step_count() == 0);
}

TEST_CASE("sharded_optimizer: a step that fails its checks changes nothing, before and after the first step",
          "[distributed]") {
    const single_process_communicator comm;
    const fixed ct_d{dist_test::single_process_fisher(4, 0.3).masks};
    const model ref = dist_test::run_reference(ct_d, 4);
    model m;
    sharded_optimizer<adamw, single_process_communicator> opt(comm, ct_d);
    auto head_options = dist_test::test_options();
    head_options.lr *= 10;
    const auto enc = opt.add_group("encoder", dist_test::test_options(), true);
    const auto hd = opt.add_group("head", head_options, false);
    opt.add_parameter(enc, "layer.0.weight", m.w0, m.g0);
    opt.add_parameter(enc, "layer.0.bias", m.w1, m.g1);
    opt.add_parameter(hd, "head.weight", m.head, m.ghead);

    // Before the first step: the mask names a tensor not registered yet. The
    // slices are not built, so it can still be added.
    m.gradients(0);
    const model before = m;
    CHECK_THROWS_MATCHES(opt.step(), error, error_with("tensor 'layer.1.weight' is not registered"));
    CHECK(same_bits(before, m));
    CHECK(opt.step_count() == 0);
    CHECK(opt.state_bytes() == 0);
    opt.add_parameter(enc, "layer.1.weight", m.w2, m.g2);
    for (std::uint64_t s = 0; s < 2; ++s) {
        m.gradients(s);
        opt.step();
    }

    // After it: a mask that misses a tensor is refused at once; one with a tensor
    // nobody registered passes set_mask (every registered tensor has its mask)
    // and fails the step's coverage check, before anything changes.
    CHECK_THROWS_MATCHES(opt.set_mask(fixed{}), error, error_with("no mask for tensor 'layer.0.weight'"));
    mask_set extra = ct_d.masks;
    extra.add("layer.9.weight", bit_mask(4));
    opt.set_mask(fixed{extra});
    std::stringstream saved;
    opt.save(saved);
    m.gradients(2);
    const model mid = m;
    CHECK_THROWS_MATCHES(opt.step(), error, error_with("tensor 'layer.9.weight' is not registered"));
    CHECK(same_bits(mid, m));
    std::stringstream again;
    opt.save(again);
    CHECK(again.str() == saved.str());

    opt.set_mask(ct_d);
    for (std::uint64_t s = 2; s < 4; ++s) {
        m.gradients(s);
        opt.step();
    }
    CHECK(opt.step_count() == 4);
    CHECK(same_bits(ref, m));
}

TEST_CASE("distributed_fisher_select at world size 1 equals fisher_accumulator::select", "[distributed]") {
    const single_process_communicator comm;
    model m;
    for (std::size_t known : {std::size_t{0}, std::size_t{4}}) {
        fisher_accumulator<float> acc({.max_grad_norm = 0, .num_batches = known});
        m.add_fisher_tensors(acc);
        for (int b = 0; b < 4; ++b) {
            m.gradients(static_cast<std::uint64_t>(b)); // not integers: one rank sums in the same order anyway
            m.accumulate(acc);
        }
        for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
            const auto want = acc.select(0.25, rule);
            const auto got = distributed_fisher_select(comm, acc, 0.25, rule, default_backend{}, 100);
            CHECK(got.batches == 4);
            CHECK(got.selection.masks == want.masks);
            CHECK(got.selection.threshold == want.threshold);
            CHECK(got.selection.kept == want.kept);
        }
    }
    fisher_accumulator<float> empty;
    m.add_fisher_tensors(empty);
    CHECK_THROWS_MATCHES(distributed_fisher_select(comm, empty, 0.25), error, error_with("no rank ended a batch"));
}
