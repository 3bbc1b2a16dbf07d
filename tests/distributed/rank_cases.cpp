// The multi-process test cases of data-parallel Child-Tuning, run on every rank
// of a real engine: under mpirun (tests/adapters/mpi.cpp) and as c10d processes
// over a FileStore (tests/adapters/torch_distributed.cpp). Compiled once and
// linked into both programs, which supply test_comm() (any_communicator.hpp).
//
// Every rank compares its parameters after a sharded run with a single-process
// core optimizer run it computes itself, bit for bit, for dense, Child-Tuning_F
// and Child-Tuning_D; checks per-rank state bytes, per-rank save/load and the
// errors every rank must raise together (never a hang: ctest's timeout).

#include "distributed/any_communicator.hpp"
#include "distributed/model.hpp"
#include "support/error_matcher.hpp"

#include <childtune/distributed/fisher.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/update/adam.hpp>
#include <childtune/update/sgd.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

namespace rank_cases {

using namespace childtune;
using test_communicator = dist_test::any_communicator;
using dist_test::model;
using test_support::error_with;
using sharded = sharded_optimizer<adamw, test_communicator>;

//! A per-rank file name under the temp directory, unique to this job (rank 0's pid).
inline std::string rank_file(const test_communicator& comm, const std::string& tag) {
    auto pid = static_cast<std::uint64_t>(::getpid());
    comm.broadcast(std::as_writable_bytes(std::span(&pid, 1)), 0);
    return (std::filesystem::temp_directory_path() /
            ("childtune_ranks_" + std::to_string(pid) + "_" + tag + "_" + std::to_string(comm.rank()) + ".state"))
        .string();
}

//! Whether `v` is the same on every rank.
inline bool same_on_all_ranks(const test_communicator& comm, std::uint64_t v) {
    const auto all = childtune::detail::all_gather_value(comm, v);
    for (const auto x : all)
        if (x != all[0]) return false;
    return true;
}

inline std::uint64_t mask_hash(const mask_set& s) {
    childtune::detail::checksum64 h;
    for (const auto& e : s.entries()) h.update(e.mask.words().data(), e.mask.words().size() * sizeof(std::uint64_t));
    return h.value();
}

//! The Child-Tuning_D mask of 6 integer-gradient batches, batch b on rank b % world.
inline top_p_result distributed_mask(const test_communicator& comm) {
    model m;
    fisher_accumulator<float> acc;
    m.add_fisher_tensors(acc);
    for (std::uint64_t b = comm.rank(); b < 6; b += comm.size()) {
        m.integer_gradients(b);
        m.accumulate(acc);
    }
    return distributed_fisher_select(comm, acc, 0.3).selection;
}

} // namespace rank_cases

TEST_CASE("ranks: the communicator's collectives", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    std::vector<std::uint64_t> u{comm.rank(), 1, ~std::uint64_t{0}};
    comm.all_reduce_sum(std::span(u));
    CHECK(u[0] == comm.size() * (comm.size() - 1) / 2);
    CHECK(u[1] == comm.size());
    CHECK(u[2] == ~std::uint64_t{0} * comm.size()); // modulo 2^64, as unsigned addition
    std::vector<double> d{0.5};
    comm.all_reduce_sum(std::span(d));
    CHECK(d[0] == 0.5 * static_cast<double>(comm.size()));
    std::vector<float> f{0.25f, -1.0f};
    comm.all_reduce_sum(std::span(f));
    CHECK(f[0] == 0.25f * static_cast<float>(comm.size()));
    CHECK(f[1] == -static_cast<float>(comm.size()));
    // Rank r sends r + 1 bytes of value r, and rank 0 nothing in a second round.
    std::vector<std::size_t> counts(comm.size());
    std::size_t total = 0;
    for (std::size_t r = 0; r < comm.size(); ++r) total += counts[r] = r + 1;
    std::vector<std::byte> mine(comm.rank() + 1, std::byte(comm.rank())), all(total);
    comm.all_gather(mine, all, counts);
    std::size_t at = 0;
    for (std::size_t r = 0; r < comm.size(); ++r)
        for (std::size_t i = 0; i <= r; ++i) CHECK(all[at++] == std::byte(r));
    counts[0] = 0;
    std::vector<std::byte> some(comm.rank() == 0 ? 0 : comm.rank() + 1, std::byte(7)), rest(total - 1);
    comm.all_gather(some, rest, counts);
    CHECK(std::all_of(rest.begin(), rest.end(), [](std::byte x) { return x == std::byte(7); }));
    std::vector<std::byte> b(5, std::byte(comm.rank()));
    comm.broadcast(b, comm.size() - 1);
    CHECK(std::all_of(b.begin(), b.end(), [&](std::byte x) { return x == std::byte(comm.size() - 1); }));
    // Bad arguments are rejected before any collective (so no rank waits).
    CHECK_THROWS_MATCHES(comm.all_gather(mine, all, std::span(counts).first(1)), error, error_with("counts in a world of"));
    CHECK_THROWS_MATCHES(comm.broadcast(b, comm.size()), error, error_with("broadcast from rank"));
}

TEST_CASE("ranks: Child-Tuning_F masks agree on every rank with no communication", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    // Each rank draws the masks of every tensor of the test model for 4 steps on
    // its own; only their fingerprints are exchanged.
    const bernoulli mode{0.3, 99};
    childtune::detail::checksum64 h;
    for (std::uint64_t step = 0; step < 4; ++step)
        for (const char* name : {"layer.0.weight", "layer.0.bias", "layer.1.weight"}) {
            const auto view = mode.view(stable_tensor_key(name), step);
            for (std::size_t word = 0; word < 8; ++word) {
                const std::uint64_t bits = view.bits64(64 * word);
                h.update(&bits, sizeof bits);
            }
        }
    CHECK(same_on_all_ranks(comm, h.value()));
}

TEST_CASE("ranks: sharded steps equal the single-process optimizer bit for bit", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const auto ct_d = fixed{distributed_mask(comm).masks};
    for (const mask_mode& mode : {mask_mode{dense{}}, mask_mode{bernoulli{0.3, 7}}, mask_mode{ct_d}}) {
        INFO("mode " << mode.index() << ", rank " << comm.rank() << " of " << comm.size());
        std::size_t ref_bytes = 0, bytes = 0;
        const model ref = dist_test::run_reference(mode, 5, &ref_bytes);
        const std::uint64_t m_elements = ref.elements();
        const model got = dist_test::run_sharded(comm, mode, 5, &bytes);
        CHECK(same_bits(ref, got));
        // State: the slices' state adds up to the single-process state, and each
        // rank holds about 1/world of it.
        std::vector<std::uint64_t> sum{bytes};
        comm.all_reduce_sum(std::span(sum));
        CHECK(sum[0] == ref_bytes);
        // Slices balance elements, not bytes: this rank holds exactly its slice's
        // state, 8 bytes per element of fp32 state (float, bfloat16 parameters)
        // and 16 per element of fp64 state (the double tensor w2, elements [501, 831)).
        const shard_range slice = shard_of(m_elements, comm.size(), comm.rank());
        const std::uint64_t fp64 = intersect(slice, 501, 831).size();
        CHECK(bytes == 8 * (slice.size() - fp64) + 16 * fp64);
        if (mode.index() == 0)
            std::printf("rank %zu of %zu: optimizer state %zu bytes (single process %zu)\n", comm.rank(), comm.size(), bytes,
                        ref_bytes);
    }
}

TEST_CASE("ranks: every rule is bit-identical sharded (torch-flavour AdamW, Adam, SGD with momentum)", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const mask_mode modes[] = {dense{}, bernoulli{0.4, 3}};
    for (const auto& mode : modes) {
        INFO("mode " << mode.index() << ", rank " << comm.rank() << " of " << comm.size());
        adamw::options aw;
        aw.lr = 1e-2;
        aw.weight_decay = 0.1;
        aw.flavour = adamw_flavour::torch;
        CHECK(same_bits(dist_test::run_reference<adamw>(aw, mode, 4), dist_test::run_sharded<adamw>(comm, aw, mode, 4)));
        adam::options a;
        a.lr = 1e-2;
        a.weight_decay = 0.01;
        CHECK(same_bits(dist_test::run_reference<adam>(a, mode, 4), dist_test::run_sharded<adam>(comm, a, mode, 4)));
        sgd::options s;
        s.lr = 0.05;
        s.momentum = 0.9;
        s.nesterov = true;
        s.weight_decay = 1e-3;
        CHECK(same_bits(dist_test::run_reference<sgd>(s, mode, 4), dist_test::run_sharded<sgd>(comm, s, mode, 4)));
    }
}

TEST_CASE("ranks: the distributed Child-Tuning_D mask is the same on every rank and equals one process's", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const auto got = distributed_mask(comm);
    CHECK(same_on_all_ranks(comm, mask_hash(got.masks)));
    const auto want = dist_test::single_process_fisher(6, 0.3);
    CHECK(got.masks == want.masks); // integer gradients: every partial sum is exact
    CHECK(got.threshold == want.threshold);
    CHECK(got.kept > 0);
}

TEST_CASE("ranks: per-rank save and load resume bit-identically", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const mask_mode mode = bernoulli{0.3, 11};
    const model ref = dist_test::run_reference(mode, 6);
    const std::string path = rank_file(comm, "resume");
    model m;
    {
        sharded opt(comm, mode);
        m.attach(opt, dist_test::test_options());
        for (std::uint64_t s = 0; s < 3; ++s) {
            m.gradients(s);
            opt.step();
        }
        opt.save(path);
    }
    sharded resumed(comm); // mode and group options come from the file
    m.attach(resumed);
    resumed.load(path);
    for (std::uint64_t s = 3; s < 6; ++s) {
        m.gradients(s);
        resumed.step();
    }
    CHECK(same_bits(ref, m));
    std::filesystem::remove(path);
}

TEST_CASE("ranks: resuming with another world size fails on every rank", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    // Each rank writes the state of a world of 1 (what a 1-process run saved).
    const std::string path = rank_file(comm, "world1");
    {
        model m;
        const single_process_communicator one;
        sharded_optimizer<adamw, single_process_communicator> opt(one);
        m.attach(opt);
        m.gradients(0);
        opt.step();
        opt.save(path);
    }
    model m;
    sharded opt(comm);
    m.attach(opt);
    if (comm.rank() == 0) // rank 0 of 1 matches its rank, not the world size
        CHECK_THROWS_MATCHES(opt.load(path), error, error_with("world of 1 ranks; this is rank 0 of " + std::to_string(comm.size())));
    else
        CHECK_THROWS_MATCHES(opt.load(path), error, error_with("rank 0 of a world of 1"));
    CHECK(opt.step_count() == 0);
    std::filesystem::remove(path);

    // One rank's file missing: every rank fails, the others naming it.
    const std::string good = rank_file(comm, "good"); // collective: every rank calls it
    {
        sharded saver(comm);
        m.attach(saver);
        m.gradients(0);
        saver.step();
        saver.save(good);
    }
    sharded again(comm);
    m.attach(again);
    const std::string missing = comm.rank() == 1 ? std::string("no/such/dir/state") : good;
    if (comm.rank() == 1) CHECK_THROWS_MATCHES(again.load(missing), error, error_with("cannot open"));
    else CHECK_THROWS_MATCHES(again.load(missing), error, error_with("rank 1 of " + std::to_string(comm.size()) + " failed"));
    CHECK(again.step_count() == 0);
    std::filesystem::remove(good);
}

TEST_CASE("ranks: a rank registering a different parameter set fails on every rank", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    model m;
    sharded opt(comm);
    const auto o = adamw::options{};
    const auto g = opt.add_group("encoder", o, true);
    opt.add_parameter(g, "layer.0.weight", m.w0, m.g0);
    const bool odd = comm.rank() == comm.size() - 1;
    opt.add_parameter(g, odd ? "layer.0.bias.renamed" : "layer.0.bias", m.w1, m.g1);
    m.gradients(0);
    const model before = m;
    CHECK_THROWS_MATCHES(opt.step(), error,
                         error_with("rank " + std::to_string(comm.size() - 1) + " registered a different parameter set"));
    CHECK(same_bits(before, m));

    // Different sizes (same names) are caught the same way.
    sharded sized(comm);
    const auto g2 = sized.add_group("encoder", o, true);
    sized.add_parameter(g2, "layer.0.weight", tensor_view<float>(m.w0.data(), odd ? 300 : 301),
                        tensor_view<const float>(m.g0.data(), odd ? 300 : 301));
    CHECK_THROWS_MATCHES(sized.step(), error, error_with("registered a different parameter set"));
}

TEST_CASE("ranks: a NaN gradient seen by one rank's slice skips or fails the step on every rank", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    for (const auto policy : {nonfinite_policy::raise, nonfinite_policy::skip}) {
        model m;
        optimizer_options oo;
        oo.on_nonfinite = policy;
        sharded opt(comm, bernoulli{0.5, 1}, oo);
        m.attach(opt, dist_test::test_options());
        m.gradients(0);
        m.ghead.back() = std::numeric_limits<float>::quiet_NaN(); // the last element: the last rank's slice only
        const model before = m;
        if (policy == nonfinite_policy::raise) {
            CHECK_THROWS_MATCHES(opt.step(), error, error_with("tensor 'head.weight': gradient holds NaN or Inf"));
        } else {
            const auto r = opt.step();
            CHECK_FALSE(r.applied);
            CHECK(r.nonfinite_tensor == "head.weight");
        }
        CHECK(same_bits(before, m));
        CHECK(opt.step_count() == 0);
    }
}

TEST_CASE("ranks: a step that fails its checks on one rank fails on every rank, and nothing changes", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const fixed ct_d{distributed_mask(comm).masks};
    const model ref = dist_test::run_reference(ct_d, 4);
    model m;
    sharded opt(comm, ct_d);
    m.attach(opt, dist_test::test_options());
    for (std::uint64_t s = 0; s < 2; ++s) {
        m.gradients(s);
        opt.step();
    }
    // The last rank alone switches to a mask that names a tensor nobody
    // registered: its step's checks fail, and every rank's step with it.
    const bool odd = comm.rank() + 1 == comm.size();
    if (odd) {
        mask_set extra = ct_d.masks;
        extra.add("layer.9.weight", bit_mask(4));
        opt.set_mask(fixed{extra});
    }
    m.gradients(2);
    const model before = m;
    std::stringstream saved;
    opt.save(saved);
    if (odd) CHECK_THROWS_MATCHES(opt.step(), error, error_with("tensor 'layer.9.weight' is not registered"));
    else
        CHECK_THROWS_MATCHES(opt.step(), error,
                             error_with("rank " + std::to_string(comm.size() - 1) + " of " + std::to_string(comm.size()) + " failed"));
    CHECK(same_bits(before, m));
    CHECK(opt.step_count() == 2);
    std::stringstream again;
    opt.save(again);
    CHECK(again.str() == saved.str());
    // Put right, the run goes on to the single-process result.
    if (odd) opt.set_mask(ct_d);
    for (std::uint64_t s = 2; s < 4; ++s) {
        m.gradients(s);
        opt.step();
    }
    CHECK(same_bits(ref, m));
}

TEST_CASE("ranks: distributed Fisher refuses ranks with other tensors, and more batches than N, on every rank", "[ranks]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const bool odd = comm.rank() + 1 == comm.size();
    model m;
    fisher_accumulator<float> other;
    other.add_tensor("layer.0.weight", m.w0.size());
    other.add_tensor(odd ? "layer.0.bias.renamed" : "layer.0.bias", m.w1.size());
    m.integer_gradients(0);
    other.accumulate("layer.0.weight", m.g0);
    other.accumulate(odd ? "layer.0.bias.renamed" : "layer.0.bias", m.g1);
    other.end_batch();
    CHECK_THROWS_MATCHES(distributed_fisher_select(comm, other, 0.3), error,
                         error_with("rank " + std::to_string(comm.size() - 1) + " accumulated different tensors"));

    // N = world - 1 batches known, but every rank ends one: world > N.
    fisher_accumulator<float> counted({.num_batches = comm.size() - 1});
    counted.add_tensor("layer.0.weight", m.w0.size());
    counted.accumulate("layer.0.weight", m.g0);
    counted.end_batch();
    CHECK_THROWS_MATCHES(distributed_fisher_select(comm, counted, 0.3), error,
                         error_with("the ranks ended " + std::to_string(comm.size()) + " batches, more than num_batches"));
}

// ---- lost ranks: hidden cases, each run by its own ctest entry -------------------

// mpi/np3_rank_dies and c10d/np3_rank_dies: the last rank dies before the step.
// MPI has no timeout for a collective whose peer is gone: mpirun ends the job,
// stopping every rank and naming the dead one. On c10d the others' step fails
// with childtune::error (the dead rank's connections close).
TEST_CASE("ranks: a rank that dies before the step", "[.rank_dies]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    model m;
    sharded opt(comm, bernoulli{0.5, 1});
    m.attach(opt, dist_test::test_options());
    m.gradients(0);
    if (comm.rank() + 1 == comm.size()) std::_Exit(3);
    CHECK_THROWS_AS(opt.step(), error); // under MPI the launcher stops this rank first
    CHECK(opt.step_count() == 0);
}

// c10d/np3_lost_rank: the last rank stops calling collectives for 4 times the
// group's timeout (CHILDTUNE_TEST_TIMEOUT_MS, set by the c10d launcher), and
// every other rank's step fails after the timeout with an error naming the
// operation, instead of waiting forever. (MPI offers no such timeout.)
TEST_CASE("ranks: a rank that stops calling collectives fails the others' step after the timeout", "[.lost_rank]") {
    using namespace rank_cases;
    const auto& comm = test_comm();
    const char* timeout = std::getenv("CHILDTUNE_TEST_TIMEOUT_MS");
    REQUIRE(timeout != nullptr);
    model m;
    sharded opt(comm, bernoulli{0.5, 1});
    m.attach(opt, dist_test::test_options());
    m.gradients(0);
    if (comm.rank() + 1 == comm.size()) {
        // Lost: alive, but silent past the others' timeout (then it exits).
        std::this_thread::sleep_for(std::chrono::milliseconds(4 * std::stoi(timeout)));
        return;
    }
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_MATCHES(opt.step(), error, error_with("allgather failed"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(60));
    CHECK(opt.step_count() == 0);
}
