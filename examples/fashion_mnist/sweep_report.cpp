//! \file
//! The report of a sweep (scripts/sweep.sh): reads the runs log that
//! fashion_mnist_child_tuning --runs-csv appended to and, for every cell
//! (K, lr, epochs, p) and every method, the paired difference of test accuracy
//! to vanilla AdamW over the seeds both ran (same seed: same K-shot sample,
//! head and batch order), with its 95 % t-interval. Writes a markdown table,
//! the same numbers as CSV, and a heatmap (gnuplot). Torch-free.

#include "../common/cli.hpp"
#include "../common/stats.hpp"
#include "runs_log.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace {

namespace fs = std::filesystem;
using fashion_mnist::run_row;

constexpr const char* usage_text =
    "usage: fashion_mnist_sweep_report --csv FILE --out DIR [--K LIST] [--lr LIST] [--p LIST]\n"
    "                                  [--seeds N] [--title TEXT]\n"
    "  Reads the runs log of a sweep (fashion_mnist_child_tuning --runs-csv) and writes, for\n"
    "  every cell (K, lr, epochs, p) and method, the paired difference to vanilla with its\n"
    "  95 % t-interval over seeds: DIR/sweep_report.md (a markdown table),\n"
    "  DIR/sweep_summary.csv and DIR/sweep_heatmap.png (gnuplot; script beside it).\n"
    "  --K, --lr, --p (comma-separated) and --seeds N (seeds 0..N-1) restrict the report to\n"
    "  those cells and seeds; by default it covers every run of FILE.\n";

//! The numbers of a comma-separated list ("" -> none).
std::vector<double> number_list(const std::string& text, example_cli::arguments& args) {
    std::vector<double> out;
    std::size_t at = 0;
    while (at <= text.size() && !text.empty()) {
        const auto end = std::min(text.find(',', at), text.size());
        const std::string item = text.substr(at, end - at);
        std::size_t used = 0;
        double v = 0;
        try {
            v = std::stod(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (item.empty() || used != item.size()) args.fail("invalid number '" + item + "' in " + args.flag());
        out.push_back(v);
        at = end + 1;
    }
    return out;
}

//! Whether x is one of `values` (all of them when `values` is empty).
bool listed(double x, const std::vector<double>& values) {
    if (values.empty()) return true;
    return std::any_of(values.begin(), values.end(),
                       [&](double v) { return std::abs(x - v) <= 1e-9 * std::max(std::abs(x), std::abs(v)); });
}

std::string format(const char* fmt, auto... args) {
    char buffer[256];
    std::snprintf(buffer, sizeof buffer, fmt, args...);
    return buffer;
}

std::string quoted(const std::string& s, char quote, const std::string& doubled) {
    std::string out(1, quote);
    for (const char c : s) {
        if (c == quote) out += doubled;
        else out += c;
    }
    return out + quote;
}

//! A cell of the grid; numbers compare as numbers, so the table is in grid order.
struct cell {
    int shots;
    double lr;
    int epochs;
    double p;
    std::string lr_text, p_text;
    bool operator<(const cell& o) const { return std::tie(shots, lr, epochs, p) < std::tie(o.shots, o.lr, o.epochs, o.p); }
};

struct entry {
    example_stats::interval difference; //!< percentage points
    int better = 0;                     //!< seeds on which the method beat vanilla
};

} // namespace

int main(int argc, char** argv) try {
    fs::path csv, out;
    std::vector<double> K_values, lr_values, p_values;
    int seeds = 0; // 0: every seed
    std::string title = "Fashion-MNIST transfer: each method minus vanilla AdamW, same seeds (accuracy points)";
    example_cli::arguments args(argc, argv, "fashion_mnist_sweep_report", usage_text);
    while (args.next()) {
        if (args.is("--csv")) csv = args.text();
        else if (args.is("--out")) out = args.text();
        else if (args.is("--title")) title = args.text();
        else if (args.is("--K")) K_values = number_list(args.text(), args);
        else if (args.is("--lr")) lr_values = number_list(args.text(), args);
        else if (args.is("--p")) p_values = number_list(args.text(), args);
        else if (args.is("--seeds")) seeds = args.number<int>();
        else args.unknown();
    }
    if (csv.empty() || out.empty()) args.fail("--csv and --out are required");
    if (!fs::exists(csv)) args.fail("no runs log at " + csv.string());

    std::string warning;
    const auto rows = fashion_mnist::read_runs(csv, &warning);
    if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());

    // vanilla accuracy by (K, lr, epochs) and seed; the others by cell, method and seed.
    std::map<std::tuple<int, std::string, int>, std::map<int, double>> vanilla;
    std::map<cell, std::map<std::string, std::map<int, double>>> masked;
    std::vector<std::string> method_order; // first appearance: the demo's order
    for (const auto& r : rows) {
        if (!listed(r.shots, K_values) || !listed(std::stod(r.lr), lr_values) || (seeds > 0 && r.seed >= seeds)) continue;
        if (r.method != "vanilla" && !r.p.empty() && !listed(std::stod(r.p), p_values)) continue;
        if (r.method == "vanilla") {
            vanilla[{r.shots, r.lr, r.epochs}][r.seed] = r.test_accuracy;
            continue;
        }
        if (r.p.empty()) throw std::runtime_error(csv.string() + ": method " + r.method + " has a row without p");
        if (std::find(method_order.begin(), method_order.end(), r.method) == method_order.end())
            method_order.push_back(r.method);
        masked[cell{r.shots, std::stod(r.lr), r.epochs, std::stod(r.p), r.lr, r.p}][r.method][r.seed] = r.test_accuracy;
    }
    std::set<int> epochs_seen;
    for (const auto& [c, _] : masked) epochs_seen.insert(c.epochs);
    const bool show_epochs = epochs_seen.size() > 1;

    fs::create_directories(out);
    std::ofstream md(out / "sweep_report.md", std::ios::trunc), summary(out / "sweep_summary.csv", std::ios::trunc);
    summary << "K,lr,epochs,p,method,n,vanilla_accuracy,difference,ci_low,ci_high,better\n";
    md << "Test accuracy of vanilla AdamW (%, mean over seeds) and each method's paired difference to it "
          "(accuracy points, mean over the seeds both ran, [95 % t-interval]); **bold**: the interval "
          "excludes 0.\n\n";
    md << "| K | lr |" << (show_epochs ? " epochs |" : "") << " p | seeds | vanilla (%) |";
    for (const auto& m : method_order) md << " " << m << " - vanilla |";
    md << "\n|---|---|" << (show_epochs ? "---|" : "") << "---|---|---|";
    for (std::size_t i = 0; i < method_order.size(); ++i) md << "---|";
    md << "\n";

    // The heatmap's data: x = cell, y = method.
    std::string map_data, label_data, xtics;
    int x = 0, cells = 0, significant = 0, entries = 0;
    double largest = 0;
    for (const auto& [c, by_method] : masked) {
        const auto v = vanilla.find({c.shots, c.lr_text, c.epochs});
        if (v == vanilla.end()) continue; // no vanilla run to pair with yet
        std::vector<double> base;
        for (const auto& [seed, a] : v->second) base.push_back(100 * a);
        const double base_mean = example_stats::summarize(base).mean;
        md << "| " << c.shots << " | " << c.lr_text << " |" << (show_epochs ? " " + std::to_string(c.epochs) + " |" : "")
           << " " << c.p_text << " | " << base.size() << " | " << format("%.2f", base_mean) << " |";
        for (std::size_t y = 0; y < method_order.size(); ++y) {
            const auto it = by_method.find(method_order[y]);
            std::vector<double> d;
            int better = 0;
            if (it != by_method.end())
                for (const auto& [seed, a] : it->second)
                    if (const auto b = v->second.find(seed); b != v->second.end()) {
                        d.push_back(100 * (a - b->second));
                        better += a > b->second;
                    }
            if (d.empty()) {
                md << " |";
                continue;
            }
            const auto i = example_stats::t_interval(d);
            const bool excludes_zero = d.size() >= 2 && (i.low() > 0 || i.high() < 0);
            std::string text = format("%+.2f", i.mean);
            if (excludes_zero) text = "**" + text + "**";
            if (d.size() >= 2) text += format(" [%+.2f, %+.2f]", i.low(), i.high());
            if (d.size() != base.size()) text += format(" (%zu seeds)", d.size());
            md << " " << text << " |";
            summary << c.shots << "," << c.lr_text << "," << c.epochs << "," << c.p_text << "," << method_order[y] << ","
                    << d.size() << "," << format("%.4f", base_mean) << "," << format("%.4f", i.mean) << ","
                    << (d.size() >= 2 ? format("%.4f,%.4f", i.low(), i.high()) : std::string(",")) << "," << better
                    << "\n";
            map_data += format("%d %zu %.4f\n", x, y, i.mean);
            label_data += format("%d %zu \"%+.2f%s\"\n", x, y, i.mean, excludes_zero ? "*" : "");
            largest = std::max(largest, std::abs(i.mean));
            significant += excludes_zero;
            ++entries;
        }
        md << "\n";
        xtics += format("%s\"K %d, lr %s%s, p %s\" %d", x ? ", " : "", c.shots, c.lr_text.c_str(),
                        show_epochs ? format(", %d ep", c.epochs).c_str() : "", c.p_text.c_str(), x);
        ++x;
        ++cells;
    }
    md << "\n" << entries << " cell-method pairs, " << significant << " with an interval that excludes 0.\n";
    if (!md.flush() || !summary.flush()) throw std::runtime_error("cannot write into " + out.string());
    std::printf("report: %s (%d cells, %zu methods besides vanilla, %d of %d intervals exclude 0)\n",
                (out / "sweep_report.md").string().c_str(), cells, method_order.size(), significant, entries);
    if (cells == 0) {
        std::printf("no cell has both vanilla and another method yet: no heatmap\n");
        return 0;
    }

    // The heatmap: blue below 0 (worse than vanilla), red above, white at 0;
    // a '*' marks an interval that excludes 0.
    const fs::path png = out / "sweep_heatmap.png", script = out / "sweep_heatmap.gp";
    {
        const double range = largest > 0 ? std::ceil(largest * 10) / 10 : 1;
        std::ofstream gp(script, std::ios::trunc);
        gp << "$map << EOD\n" << map_data << "EOD\n$labels << EOD\n" << label_data << "EOD\n";
        const auto width = std::max(760, 260 + 80 * cells);
        const auto height = 280 + 60 * static_cast<int>(method_order.size());
        gp << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size " << width << "," << height
           << " font ',10' } else { set terminal png size " << width << "," << height << " }\n";
        gp << "set output " << quoted(png.string(), '\'', "''") << "\n";
        gp << "set title " << quoted(title, '\'', "''") << " . \"\\n*: the 95 % interval excludes 0\" noenhanced\n";
        gp << "set palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\n";
        gp << format("set cbrange [%.1f:%.1f]\n", -range, range);
        gp << "set cblabel 'accuracy points vs vanilla'\n";
        // The methods top-down in the table's order.
        gp << "set xrange [-0.5:" << cells - 0.5 << "]\nset yrange [" << static_cast<double>(method_order.size()) - 0.5
           << ":-0.5]\n";
        gp << "set xtics (" << xtics << ") rotate by 45 right noenhanced\nset ytics (";
        for (std::size_t y = 0; y < method_order.size(); ++y)
            gp << (y ? ", " : "") << quoted(method_order[y], '\'', "''") << " " << y;
        gp << ") noenhanced\nset tics scale 0\nunset key\n";
        gp << "plot $map using 1:2:3 with image, $labels using 1:2:3 with labels font ',9'\n";
        if (!gp.flush()) throw std::runtime_error("cannot write " + script.string());
    }
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
        std::printf("gnuplot not found (apt-get install gnuplot-nox): heatmap skipped\n");
        return 0;
    }
    const std::string command = "gnuplot " + quoted(script.string(), '\'', "'\\''");
    if (std::system(command.c_str()) != 0) throw std::runtime_error("gnuplot failed on " + script.string());
    std::printf("heatmap: %s\n", png.string().c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist_sweep_report: %s\n", e.what());
    return 1;
}
