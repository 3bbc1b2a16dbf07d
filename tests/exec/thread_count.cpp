#include <childtune/exec/backend.hpp>
#include <childtune/exec/thread_count.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

using childtune::choose_thread_count;
using childtune::thread_count_inputs;

namespace {
thread_count_inputs host(std::size_t hardware, std::size_t local_ranks, std::size_t openmp_default) {
    thread_count_inputs in;
    in.hardware_threads = hardware;
    in.local_ranks = local_ranks;
    in.openmp_default = openmp_default;
    return in;
}

// Clears the variables the choice reads, so each case starts from a known environment.
void clear_environment() {
    for (const char* v : {"CHILDTUNE_NUM_THREADS", "OMP_NUM_THREADS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"})
        unsetenv(v);
}
} // namespace

TEST_CASE("thread count: an explicit count wins, then CHILDTUNE_NUM_THREADS, then OMP_NUM_THREADS, then local ranks",
          "[exec][threads]") {
    auto in = host(64, 4, 64);
    CHECK(choose_thread_count(in) == 16); // 64 hardware threads shared by 4 ranks
    in.omp_num_threads_set = true;
    CHECK(choose_thread_count(in) == 64); // the user's OMP_NUM_THREADS (OpenMP's default follows it)
    // emplace, not `= "5"`: GCC 12.2 at -O3 warns -Wrestrict on an optional<string>
    // assigned a literal (a false positive, GCC bug 105329) when it inlines deeply.
    in.childtune_num_threads.emplace("5");
    CHECK(choose_thread_count(in) == 5);
    in.explicit_threads = 2;
    CHECK(choose_thread_count(in) == 2);
}

TEST_CASE("thread count: ranks share the host's hardware threads, at least one each", "[exec][threads]") {
    CHECK(choose_thread_count(host(16, 1, 16)) == 16);
    CHECK(choose_thread_count(host(16, 2, 16)) == 8);
    CHECK(choose_thread_count(host(16, 3, 16)) == 5); // rounded down: never more than the host has
    CHECK(choose_thread_count(host(16, 16, 16)) == 1);
    CHECK(choose_thread_count(host(16, 40, 16)) == 1);
    CHECK(choose_thread_count(host(0, 4, 12)) == 3); // hardware unknown: OpenMP's default is shared
    CHECK(choose_thread_count(host(8, 1, 0)) == 1);
}

TEST_CASE("bad input: thread counts that are negative or not positive integers", "[exec][threads][bad_input]") {
    auto in = host(8, 1, 8);
    in.explicit_threads = -2;
    CHECK_THROWS_WITH(choose_thread_count(in), Catch::Contains("thread count = -2 is negative"));
    in.explicit_threads = 0;
    for (std::string bad : {"0", "", "-1", "two", "4 ", "+4", "1234567890"}) {
        in.childtune_num_threads = bad;
        CHECK_THROWS_WITH(choose_thread_count(in),
                          Catch::Contains("CHILDTUNE_NUM_THREADS = '" + bad + "'") && Catch::Contains("not a positive integer"));
    }
    clear_environment();
    setenv("LOCAL_WORLD_SIZE", "x", 1);
    CHECK_THROWS_WITH(childtune::local_ranks_from_environment(), Catch::Contains("LOCAL_WORLD_SIZE = 'x'"));
    clear_environment();
}

TEST_CASE("thread count: launchers' local sizes are read in a documented order", "[exec][threads]") {
    clear_environment();
    CHECK(childtune::local_ranks_from_environment() == 1);
    setenv("LOCAL_WORLD_SIZE", "4", 1);
    CHECK(childtune::local_ranks_from_environment() == 4);
    setenv("MPI_LOCALNRANKS", "3", 1);
    CHECK(childtune::local_ranks_from_environment() == 3);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
    CHECK(childtune::local_ranks_from_environment() == 2);
    const auto in = childtune::thread_count_inputs_from_environment(0, 32, 32);
    CHECK(in.local_ranks == 2);
    CHECK(choose_thread_count(in) == 16);
#if defined(_OPENMP)
    // The backend's default team follows the same choice.
    setenv("CHILDTUNE_NUM_THREADS", "3", 1);
    CHECK(childtune::openmp_backend{}.concurrency() == 3);
    CHECK(childtune::openmp_backend{2}.concurrency() == 2);
    unsetenv("CHILDTUNE_NUM_THREADS");
    setenv("OMP_NUM_THREADS", "7", 1); // read by OpenMP at start-up: the default team is OpenMP's own
    CHECK(childtune::openmp_backend{}.concurrency() == childtune::openmp_backend{}.openmp_default());
#endif
    clear_environment();
}

// Without OpenMP the backend is serial and reads no setting.
#if defined(_OPENMP)
TEST_CASE("bad input: a malformed CHILDTUNE_NUM_THREADS fails the step before it changes anything", "[exec][threads][bad_input]") {
    clear_environment();
    std::vector<float> w(300, 0.5f), g(300, 0.25f);
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.5, 1},
                                               {.on_nonfinite = childtune::nonfinite_policy::unchecked});
    const auto group = opt.add_group("encoder", {.lr = 0.1f});
    opt.add_parameter(group, "w", w, g);
    opt.step();
    const auto before = w;
    const auto steps = opt.step_count();
    setenv("CHILDTUNE_NUM_THREADS", "many", 1);
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("CHILDTUNE_NUM_THREADS = 'many'"));
    CHECK(opt.step_count() == steps);
    CHECK(w == before);
    clear_environment();
    opt.step();
    CHECK(opt.step_count() == steps + 1);
}
#endif
