#pragma once
//! \file
//! The demo's results: the accuracy table, the per-seed CSV and the gnuplot
//! figure. Torch-free, so the statistics and the plotting compile on their own.

#include <filesystem>
#include <string>
#include <vector>

namespace fashion_mnist {

//! One method's results, one entry per seed (seeds in the same order for every
//! method, so entries with the same index are paired).
struct method_results {
    std::string name;
    std::string tag; //!< a short name for narrow columns
    std::string p; //!< "-" for vanilla, else the keep probability / fraction
    std::vector<int> seeds;
    std::vector<double> accuracy;   //!< test accuracy in [0, 1]
    std::vector<double> train_loss; //!< mean batch loss of the last epoch
    std::vector<double> seconds;    //!< fine-tuning time, including its Fisher pass
};

//! The summary table (mean +- std per method; when vanilla (tag "vanilla") is
//! among them, every other method's paired difference to it: mean +- standard
//! error, and the seeds on which it is better), then the per-seed accuracies and
//! differences.
std::string format_table(const std::vector<method_results>& methods);

//! seed,method,p,test_accuracy,train_loss,seconds — one row per method and seed.
void write_csv(const std::filesystem::path& path, const std::vector<method_results>& methods);

//! Draws accuracy per method (every seed as a point, the mean with a std error
//! bar) into `png` with gnuplot, leaving the script beside it. Returns a line
//! saying what happened; a missing or failing gnuplot is reported, not thrown.
std::string plot(const std::filesystem::path& png, const std::vector<method_results>& methods,
                 const std::string& title);

} // namespace fashion_mnist
