#include "report.hpp"

#include "../common/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace fashion_mnist {
using example_stats::mean_std;
using example_stats::paired_differences;
using example_stats::summarize;

namespace {

std::string format(const char* fmt, auto... args) {
    char buffer[256];
    std::snprintf(buffer, sizeof buffer, fmt, args...);
    return buffer;
}

//! A path as one word for /bin/sh.
std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (const char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

//! A string literal for gnuplot (single quotes: no escapes but '').
std::string gnuplot_quote(const std::string& s) {
    std::string out = "'";
    for (const char c : s) {
        if (c == '\'') out += "''";
        else out += c;
    }
    return out + "'";
}

} // namespace

std::string format_table(const std::vector<method_results>& methods) {
    if (methods.empty()) return {};
    // The paired differences are to vanilla, when it ran.
    const auto vanilla = std::find_if(methods.begin(), methods.end(), [](const method_results& m) { return m.tag == "vanilla"; });
    const method_results* base = vanilla == methods.end() ? nullptr : &*vanilla;
    const std::size_t seeds = methods.front().accuracy.size();
    std::string out = format("%-15s %-5s %-19s %-21s %-7s %-10s %s\n", "method", "p", "test accuracy (%)",
                             "vs vanilla (paired)", "better", "train loss", "time/seed");
    for (const auto& m : methods) {
        const mean_std a = summarize(m.accuracy);
        std::string delta, better;
        if (base && &m != base) {
            const auto d = paired_differences(m.accuracy, base->accuracy);
            const mean_std ds = summarize(d);
            // The standard error of the mean paired difference: the few-shot
            // sample moves every method together, the pairing removes that.
            delta = format("%+6.2f +- %.2f", 100 * ds.mean, 100 * ds.std / std::sqrt(static_cast<double>(d.size())));
            better = format("%ld/%zu", static_cast<long>(std::count_if(d.begin(), d.end(), [](double x) { return x > 0; })),
                            d.size());
        }
        out += format("%-15s %-5s %6.2f +- %-9.2f %-21s %-7s %-10.4f %.1f s\n", m.name.c_str(), m.p.c_str(),
                      100 * a.mean, 100 * a.std, delta.c_str(), better.c_str(), summarize(m.train_loss).mean,
                      summarize(m.seconds).mean);
    }
    out += "+- after an accuracy: std over seeds; after a paired difference: its standard error.\n\n";

    out += format("%-6s", "seed");
    for (const auto& m : methods) out += format(" %14s", m.tag.c_str());
    if (base)
        for (const auto& m : methods)
            if (&m != base) out += format(" %14s", (m.tag + "-" + base->tag).c_str());
    out += "\n";
    for (std::size_t i = 0; i < seeds; ++i) {
        out += format("%-6d", methods.front().seeds[i]);
        for (const auto& m : methods) out += format(" %14.2f", 100 * m.accuracy[i]);
        if (base)
            for (const auto& m : methods)
                if (&m != base) out += format(" %+14.2f", 100 * (m.accuracy[i] - base->accuracy[i]));
        out += "\n";
    }
    return out;
}

void write_csv(const std::filesystem::path& path, const std::vector<method_results>& methods) {
    std::ofstream out(path, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + path.string());
    out << "seed,method,p,test_accuracy,train_loss,seconds\n";
    for (const auto& m : methods)
        for (std::size_t i = 0; i < m.accuracy.size(); ++i)
            out << format("%d,%s,%s,%.6f,%.6f,%.3f\n", m.seeds[i], m.name.c_str(), m.p == "-" ? "" : m.p.c_str(),
                          m.accuracy[i], m.train_loss[i], m.seconds[i]);
    if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

std::string plot(const std::filesystem::path& png, const std::vector<method_results>& methods,
                 const std::string& title) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
        return "gnuplot not found (apt-get install gnuplot-nox): plot skipped";

    auto script_path = png;
    script_path.replace_extension(".gp");
    {
        std::ofstream gp(script_path, std::ios::trunc);
        if (!gp) return "cannot write " + script_path.string() + ": plot skipped";
        // Per-seed points spread a little around the method's x so that equal
        // accuracies stay visible, one line per seed across the methods (the
        // differences are paired); the mean and its std bar sit at the x itself.
        gp << "$points << EOD\n";
        const std::size_t seeds = methods.front().accuracy.size();
        for (std::size_t i = 0; i < seeds; ++i) {
            for (std::size_t k = 0; k < methods.size(); ++k)
                gp << format("%.4f %.4f\n",
                             static_cast<double>(k + 1) - 0.15 +
                                 0.3 * (static_cast<double>(i) + 0.5) / static_cast<double>(seeds),
                             100 * methods[k].accuracy[i]);
            gp << "\n";
        }
        gp << "EOD\n$means << EOD\n";
        for (std::size_t k = 0; k < methods.size(); ++k) {
            const mean_std a = summarize(methods[k].accuracy);
            gp << format("%zu %.4f %.4f\n", k + 1, 100 * a.mean, 100 * a.std);
        }
        gp << "EOD\n";
        gp << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 800,500 } "
              "else { set terminal png size 800,500 }\n";
        gp << "set output " << gnuplot_quote(png.string()) << "\n";
        gp << "set title " << gnuplot_quote(title) << " noenhanced\n";
        // An explicit range: gnuplot warns about an empty one when all points agree.
        double low = 100, high = 0;
        for (const auto& m : methods)
            for (const double a : m.accuracy) {
                low = std::min(low, 100 * a);
                high = std::max(high, 100 * a);
            }
        for (const auto& m : methods) {
            const mean_std a = summarize(m.accuracy);
            low = std::min(low, 100 * (a.mean - a.std));
            high = std::max(high, 100 * (a.mean + a.std));
        }
        gp << format("set yrange [%.1f:%.1f]\n", std::floor(low - 0.5), std::ceil(high + 0.5));
        gp << "set ylabel 'test accuracy (%)'\nset grid ytics\nset key below horizontal\n";
        gp << "set xrange [0.5:" << methods.size() << ".5]\nset xtics (";
        for (std::size_t k = 0; k < methods.size(); ++k)
            gp << (k ? ", " : "") << gnuplot_quote(methods[k].name) << " " << k + 1;
        gp << ") noenhanced\n";
        gp << "plot $points using 1:2 with linespoints pt 7 ps 0.8 lw 0.5 lc rgb '#a0a0a0' title 'one seed', \\\n"
              "     $means using 1:2:3 with yerrorbars pt 5 ps 1.5 lw 2 lc rgb '#c00000' title 'mean +- std'\n";
        if (!gp.flush()) return "cannot write " + script_path.string() + ": plot skipped";
    }
    const std::string command = "gnuplot " + shell_quote(script_path.string());
    if (std::system(command.c_str()) != 0) return "gnuplot failed on " + script_path.string() + ": plot skipped";
    return "plot: " + png.string();
}

} // namespace fashion_mnist
