#pragma once
//! \file
//! The runs log of the demo (--runs-csv): one CSV row per finished fine-tuning
//! run, appended and flushed as soon as the run ends, so a sweep that is
//! stopped resumes where it stopped: a run whose key is in the log is read
//! back instead of trained again. Torch-free: the sweep's report reads it too.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fashion_mnist {

//! One fine-tuning run. `lr` and `p` are kept as written ("%g"), so keys
//! compare as text; `p` is empty for a method without one (vanilla).
struct run_row {
    int shots = 0;
    std::string lr;
    int epochs = 0;
    std::string method; //!< the --methods name
    std::string p;
    int seed = 0;
    double test_accuracy = 0; //!< in [0, 1]
    double train_loss = 0;
    double seconds = 0;
    std::string setup; //!< everything else that changes the numbers (pretraining, test set, threads)

    //! What identifies a run within one setup.
    auto key() const { return std::tie(shots, lr, epochs, method, p, seed); }
};

//! The header line of a runs log.
inline constexpr const char* runs_header = "K,lr,epochs,method,p,seed,test_accuracy,train_loss,seconds,setup";

//! "%g" of a number: how lr and p are written in keys.
std::string key_number(double x);

//! Every row of the log at `path` (none when it does not exist). Throws
//! std::runtime_error naming the file and line for a malformed row; a last line
//! without its newline (a write cut short) is left out and reported through `warning`.
std::vector<run_row> read_runs(const std::filesystem::path& path, std::string* warning = nullptr);

//! A runs log opened for one setup: the rows already there, looked up by key,
//! and new rows appended one line at a time.
class runs_log {
public:
    //! Reads `path` (creating it with its header when missing). Throws when it
    //! holds rows of another setup: mixing them would pair runs that differ.
    runs_log(std::filesystem::path path, std::string setup);

    //! The row of this key, when the log has it.
    std::optional<run_row> find(const run_row& key) const;
    //! Appends `row` (its setup is this log's) as one line and flushes it.
    void append(run_row row);
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
    std::string setup_;
    std::map<std::tuple<int, std::string, int, std::string, std::string, int>, run_row> rows_;
};

} // namespace fashion_mnist
