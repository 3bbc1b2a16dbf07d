// Data-parallel Child-Tuning on LibTorch's c10d: the rank test cases
// (tests/distributed/rank_cases.cpp) on childtune::torch::communicator over a
// Gloo process group that meets through a c10d::FileStore, loopback only.
//
// Run by ctest as `test_adapters_torch_distributed --world N [--timeout-ms T]
// [--expect-exit R=C] [catch args]`: this launcher starts N copies of itself as
// ranks 0..N-1 (the rank, world size, store file and Gloo timeout travel in
// CHILDTUNE_TEST_* environment variables), waits for them with a deadline, and
// fails when any rank fails (exits nonzero, except rank R with exit code C when
// expected) or the deadline passes (then it kills them: a hang is a failure,
// never a stuck CI job).

#include <childtune/torch/gloo.hpp> // first: it enables ProcessGroupGloo's declaration
#include <childtune/torch/communicator.hpp>

#include "distributed/any_communicator.hpp"
#include "support/catch_runner.hpp"
#include "support/error_matcher.hpp"

#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

using test_communicator = childtune::torch::communicator<c10d::ProcessGroupGloo>;
namespace {
std::optional<dist_test::communicator_ref<test_communicator>> this_rank;
}
const dist_test::any_communicator& test_comm() { return *this_rank; }

namespace {

std::string env(const char* name, const char* fallback = "") {
    const char* v = std::getenv(name);
    return v ? v : fallback;
}

//! Starts `world` ranks of this program and waits for them (at most `deadline`).
int launch(int world, int timeout_ms, int expected_rank, int expected_code, const std::vector<std::string>& catch_args) {
    const std::string store =
        (std::filesystem::temp_directory_path() / ("childtune_c10d_" + std::to_string(::getpid()) + ".store")).string();
    std::filesystem::remove(store);
    std::vector<pid_t> ranks;
    for (int r = 0; r < world; ++r) {
        std::vector<std::string> vars{"CHILDTUNE_TEST_RANK=" + std::to_string(r), "CHILDTUNE_TEST_WORLD=" + std::to_string(world),
                                      "CHILDTUNE_TEST_STORE=" + store, "CHILDTUNE_TEST_TIMEOUT_MS=" + std::to_string(timeout_ms)};
        std::vector<char*> envp;
        for (auto& v : vars) envp.push_back(v.data());
        for (char** e = environ; *e; ++e) envp.push_back(*e);
        envp.push_back(nullptr);
        std::string self = "/proc/self/exe";
        std::vector<std::string> args{self};
        args.insert(args.end(), catch_args.begin(), catch_args.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid = 0;
        if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0) {
            std::perror("posix_spawn");
            for (const auto p : ranks) ::kill(p, SIGKILL);
            return 1;
        }
        ranks.push_back(pid);
    }
    // Every Gloo collective of the ranks is bounded by timeout_ms; the whole run
    // by this deadline.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    int failed = 0;
    std::vector<bool> done(ranks.size(), false);
    for (std::size_t left = ranks.size(); left > 0;) {
        for (std::size_t r = 0; r < ranks.size(); ++r) {
            if (done[r]) continue;
            int status = 0;
            if (::waitpid(ranks[r], &status, WNOHANG) != ranks[r]) continue;
            done[r] = true;
            --left;
            const int want = static_cast<int>(r) == expected_rank ? expected_code : 0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != want) {
                std::fprintf(stderr, "launcher: rank %zu ended with status %d\n", r, status);
                ++failed;
            }
        }
        if (left > 0 && std::chrono::steady_clock::now() > deadline) {
            std::fprintf(stderr, "launcher: ranks still running after the deadline: killed (a hang)\n");
            for (std::size_t r = 0; r < ranks.size(); ++r)
                if (!done[r]) ::kill(ranks[r], SIGKILL);
            for (std::size_t r = 0; r < ranks.size(); ++r)
                if (!done[r]) ::waitpid(ranks[r], nullptr, 0);
            failed = 1;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::filesystem::remove(store);
    return failed == 0 ? 0 : 1;
}

} // namespace

TEST_CASE("c10d: a null process group and impossible group arguments are rejected", "[c10d]") {
    using test_support::error_with;
    CHECK_THROWS_MATCHES(test_communicator(c10::intrusive_ptr<c10d::ProcessGroupGloo>()), childtune::error, error_with("the process group is null"));
    const auto store = c10::make_intrusive<c10d::FileStore>(env("CHILDTUNE_TEST_STORE") + ".unused", 1);
    const auto second = std::chrono::seconds(1);
    CHECK_THROWS_MATCHES(childtune::torch::gloo_group(c10::intrusive_ptr<c10d::Store>(), 0, 1, second), childtune::error, error_with("the store is null"));
    CHECK_THROWS_MATCHES(childtune::torch::gloo_group(store, 2, 2, second), childtune::error, error_with("rank 2 of a group of 2"));
    CHECK_THROWS_MATCHES(childtune::torch::gloo_group(store, 0, 1, std::chrono::seconds(0)), childtune::error,
                         error_with("the timeout must be positive"));
    std::filesystem::remove(env("CHILDTUNE_TEST_STORE") + ".unused");
}

int main(int argc, char** argv) {
    if (env("CHILDTUNE_TEST_RANK").empty()) {
        // Launcher: --world N [--timeout-ms T] then Catch's arguments.
        int world = 2, timeout_ms = 30000, expected_rank = -1, expected_code = 0;
        std::vector<std::string> rest;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (a == "--world" && i + 1 < argc) world = std::stoi(argv[++i]);
            else if (a == "--timeout-ms" && i + 1 < argc) timeout_ms = std::stoi(argv[++i]);
            else if (a == "--expect-exit" && i + 1 < argc) {
                const std::string e = argv[++i];
                expected_rank = std::stoi(e.substr(0, e.find('=')));
                expected_code = std::stoi(e.substr(e.find('=') + 1));
            } else rest.push_back(a);
        }
        return launch(world, timeout_ms, expected_rank, expected_code, rest);
    }
    // Gloo writes to a dead peer's closed socket; SIGPIPE's default action would
    // kill this rank before the error reaches it (c10d/np3_rank_dies, now and then).
    // Python ignores SIGPIPE; a C++ program must (docs/distributed.md).
    std::signal(SIGPIPE, SIG_IGN);
    const int rank = std::stoi(env("CHILDTUNE_TEST_RANK")), world = std::stoi(env("CHILDTUNE_TEST_WORLD"));
    const auto store = c10::make_intrusive<c10d::FileStore>(env("CHILDTUNE_TEST_STORE"), world);
    const test_communicator comm(
        childtune::torch::gloo_group(store, rank, world, std::chrono::milliseconds(std::stoi(env("CHILDTUNE_TEST_TIMEOUT_MS"))),
                                     "127.0.0.1"));
    this_rank.emplace(comm);
    const int result = test_support::run_catch(argc, argv);
    this_rank.reset();
    return result;
}
