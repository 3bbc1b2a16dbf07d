// Crash-safe saves: a failing writer, a short write (the file-size limit makes
// write() fail as a full disk would) and SIGKILL in the middle of saving each
// leave the previous file whole and loadable.

#include <childtune/io/atomic_file.hpp>
#include <childtune/mask/dense.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using childtune::detail::replace_file_atomically;

namespace {

struct scratch_dir {
    fs::path path;
    scratch_dir() {
        path = fs::temp_directory_path() / ("childtune-atomic-" + std::to_string(::getpid()) + "-" +
                                            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        fs::create_directories(path);
    }
    ~scratch_dir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    std::size_t files() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {})); }
};

std::string contents(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

//! Runs `f` in a child process and returns its exit status (-signal when killed).
template <class F>
int in_child(F&& f) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(f());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

} // namespace

TEST_CASE("replace_file_atomically replaces a file whole or not at all", "[io][checkpoint]") {
    scratch_dir dir;
    const fs::path target = dir.path / "state.bin";
    write_text(target, "old contents");

    SECTION("the writer throws half-way") {
        REQUIRE_THROWS_WITH(replace_file_atomically(target.string(), "test file",
                                                    [](std::ostream& out) {
                                                        out << "new, half";
                                                        throw std::runtime_error("injected failure");
                                                    }),
                            Catch::Contains("injected failure") && Catch::Contains("previous file is unchanged") &&
                                Catch::Contains("state.bin"));
        REQUIRE(contents(target) == "old contents");
        REQUIRE(dir.files() == 1); // the temporary file is gone
    }
    SECTION("a short write: the file-size limit fails write() as a full disk does") {
        const int status = in_child([&] {
            std::signal(SIGXFSZ, SIG_IGN); // get EFBIG instead of the signal
            const rlimit limit{4096, 4096};
            ::setrlimit(RLIMIT_FSIZE, &limit);
            try {
                replace_file_atomically(target.string(), "test file",
                                        [](std::ostream& out) { out << std::string(1 << 20, 'x'); });
            } catch (const childtune::error& e) {
                return std::strstr(e.what(), "previous file is unchanged") ? 0 : 2;
            }
            return 1; // the save claimed success
        });
        REQUIRE(status == 0);
        REQUIRE(contents(target) == "old contents");
        REQUIRE(dir.files() == 1);
    }
    SECTION("success replaces the contents and leaves no temporary file") {
        replace_file_atomically(target.string(), "test file", [](std::ostream& out) { out << "new contents"; });
        REQUIRE(contents(target) == "new contents");
        REQUIRE(dir.files() == 1);
    }
    SECTION("a directory that does not exist is an error naming the path") {
        REQUIRE_THROWS_WITH(replace_file_atomically((dir.path / "missing" / "x.bin").string(), "test file",
                                                    [](std::ostream& out) { out << "x"; }),
                            Catch::Contains("missing/x.bin") && Catch::Contains("cannot create a temporary file"));
    }
}

TEST_CASE("an optimizer checkpoint survives SIGKILL in the middle of saving", "[io][checkpoint]") {
    scratch_dir dir;
    const std::string path = (dir.path / "opt.ctstate").string();
    // ~48 MB of state, so a save takes long enough to be killed in the middle.
    std::vector<float> w(6u << 20, 1.0f), g(w.size(), 0.01f);
    childtune::optimizer<childtune::adamw> opt;
    opt.add_group("all", {.lr = 1e-3});
    opt.add_parameter(0, "w", w, g);
    opt.step();
    opt.save(path);

    int killed = 0;
    for (const int delay_ms : {5, 20, 60, 150}) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            for (;;) opt.save(path); // saves until killed
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        killed += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 1 : 0;

        // Whatever moment the kill came, the checkpoint loads and is the whole state.
        std::vector<float> w2(w.size()), g2(w.size());
        childtune::optimizer<childtune::adamw> resumed;
        resumed.add_group("all", {});
        resumed.add_parameter(0, "w", w2, g2);
        CAPTURE(delay_ms);
        REQUIRE_NOTHROW(resumed.load(path));
        REQUIRE(resumed.step_count() == 1);
    }
    REQUIRE(killed == 4);
}
