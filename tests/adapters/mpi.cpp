// Data-parallel Child-Tuning under MPI (run by ctest as mpi/np2 and mpi/np3):
// every rank compares its parameters after a sharded run with a single-process
// core optimizer run it computes itself, bit for bit, for dense, Child-Tuning_F
// and Child-Tuning_D; checks per-rank state bytes, per-rank save/load and the
// errors every rank must raise together (never a hang: ctest's timeout).

#define CATCH_CONFIG_RUNNER
#include "distributed/model.hpp"
#include "support/error_matcher.hpp"

#include <childtune/distributed/fisher.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/mpi.hpp>

#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

using namespace childtune;
using dist_test::model;
using test_support::error_with;
using sharded = sharded_optimizer<adamw, mpi::communicator>;

namespace {

//! A per-rank file name under the temp directory, unique to this job (rank 0's pid).
std::string rank_file(const mpi::communicator& comm, const std::string& tag) {
    auto pid = static_cast<std::uint64_t>(::getpid());
    MPI_Bcast(&pid, 1, MPI_UINT64_T, 0, comm.native());
    return (std::filesystem::temp_directory_path() /
            ("childtune_mpi_" + std::to_string(pid) + "_" + tag + "_" + std::to_string(comm.rank()) + ".state"))
        .string();
}

//! Whether `v` is the same on every rank.
bool same_on_all_ranks(const mpi::communicator& comm, std::uint64_t v) {
    const auto all = detail::all_gather_value(comm, v);
    for (const auto x : all)
        if (x != all[0]) return false;
    return true;
}

std::uint64_t mask_hash(const mask_set& s) {
    detail::checksum64 h;
    for (const auto& e : s.entries()) h.update(e.mask.words().data(), e.mask.words().size() * sizeof(std::uint64_t));
    return h.value();
}

//! The Child-Tuning_D mask of 6 integer-gradient batches, batch b on rank b % world.
top_p_result distributed_mask(const mpi::communicator& comm) {
    model m;
    fisher_accumulator<float> acc;
    m.add_fisher_tensors(acc);
    for (std::uint64_t b = comm.rank(); b < 6; b += comm.size()) {
        m.integer_gradients(b);
        m.accumulate(acc);
    }
    return distributed_fisher_select(comm, acc, 0.3).selection;
}

} // namespace

TEST_CASE("mpi: the communicator's collectives", "[mpi]") {
    const mpi::communicator comm;
    std::vector<std::uint64_t> u{comm.rank(), 1};
    comm.all_reduce_sum(std::span(u));
    CHECK(u[0] == comm.size() * (comm.size() - 1) / 2);
    CHECK(u[1] == comm.size());
    std::vector<double> d{0.5};
    comm.all_reduce_sum(std::span(d));
    CHECK(d[0] == 0.5 * static_cast<double>(comm.size()));
    // Rank r sends r + 1 bytes of value r.
    std::vector<std::size_t> counts(comm.size());
    std::size_t total = 0;
    for (std::size_t r = 0; r < comm.size(); ++r) total += counts[r] = r + 1;
    std::vector<std::byte> mine(comm.rank() + 1, std::byte(comm.rank())), all(total);
    comm.all_gather(mine, all, counts);
    std::size_t at = 0;
    for (std::size_t r = 0; r < comm.size(); ++r)
        for (std::size_t i = 0; i <= r; ++i) CHECK(all[at++] == std::byte(r));
    std::vector<std::byte> b(5, std::byte(comm.rank()));
    comm.broadcast(b, comm.size() - 1);
    CHECK(b == std::vector<std::byte>(5, std::byte(comm.size() - 1)));
}

TEST_CASE("mpi: sharded steps equal the single-process optimizer bit for bit", "[mpi]") {
    const mpi::communicator comm;
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

TEST_CASE("mpi: the distributed Child-Tuning_D mask is the same on every rank and equals one process's", "[mpi]") {
    const mpi::communicator comm;
    const auto got = distributed_mask(comm);
    CHECK(same_on_all_ranks(comm, mask_hash(got.masks)));
    const auto want = dist_test::single_process_fisher(6, 0.3);
    CHECK(got.masks == want.masks); // integer gradients: every partial sum is exact
    CHECK(got.threshold == want.threshold);
    CHECK(got.kept > 0);
}

TEST_CASE("mpi: per-rank save and load resume bit-identically", "[mpi]") {
    const mpi::communicator comm;
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

TEST_CASE("mpi: resuming with another world size fails on every rank", "[mpi]") {
    const mpi::communicator comm;
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

TEST_CASE("mpi: a rank registering a different parameter set fails on every rank", "[mpi]") {
    const mpi::communicator comm;
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

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    Catch::Session session;
    int result = session.applyCommandLine(argc, argv);
    if (result == 0) result = session.run();
    // A rank that failed makes the job fail (mpirun reports the nonzero status);
    // all ranks still finalise together.
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return result;
}
