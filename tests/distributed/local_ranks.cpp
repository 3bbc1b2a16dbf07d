#include <childtune/distributed/local_ranks.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace {
// A world of ranks whose host-name hashes are given: this rank is `me`; the
// all_gather hands back the hashes, with this rank's own value in its place.
struct fake_world {
    std::vector<std::uint64_t> hosts;
    std::size_t me = 0;
    std::size_t rank() const { return me; }
    std::size_t size() const { return hosts.size(); }
    void all_reduce_sum(std::span<float>) const {}
    void all_reduce_sum(std::span<double>) const {}
    void all_reduce_sum(std::span<std::uint64_t>) const {}
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all, std::span<const std::size_t>) const {
        auto values = hosts;
        std::memcpy(&values[me], mine.data(), sizeof(std::uint64_t));
        std::memcpy(all.data(), values.data(), all.size());
    }
    void broadcast(std::span<std::byte>, std::size_t) const {}
};
} // namespace

TEST_CASE("local_rank_count counts the ranks on this rank's host", "[distributed][threads]") {
    CHECK(childtune::local_rank_count(childtune::single_process_communicator{}) == 1);
    const std::uint64_t here = childtune::detail::host_name_hash(), there = here + 1;
    CHECK(childtune::local_rank_count(fake_world{{here, there, here, here}, 0}) == 3);
    CHECK(childtune::local_rank_count(fake_world{{there, here}, 1}) == 1);
    // Four ranks on this host share its hardware threads.
    for (const char* v : {"CHILDTUNE_NUM_THREADS", "OMP_NUM_THREADS"}) unsetenv(v);
    const auto backend = childtune::backend_for_local_ranks(fake_world{{here, here, here, here}, 2});
    const std::size_t hw = std::thread::hardware_concurrency();
    CHECK(backend.threads == static_cast<int>(hw / 4 > 0 ? hw / 4 : 1));
}
