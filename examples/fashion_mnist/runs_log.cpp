#include "runs_log.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fashion_mnist {
namespace {

std::vector<std::string> split_fields(const std::string& line) {
    std::vector<std::string> out(1);
    for (const char c : line) {
        if (c == ',') out.emplace_back();
        else out.back() += c;
    }
    return out;
}

template <class T>
T parse_number(const std::string& text, const char* what) {
    std::size_t used = 0;
    T v{};
    try {
        if constexpr (std::is_same_v<T, int>) v = std::stoi(text, &used);
        else v = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (text.empty() || used != text.size()) throw std::invalid_argument(std::string(what) + " '" + text + "'");
    return v;
}

std::string format_row(const run_row& r) {
    char numbers[96];
    std::snprintf(numbers, sizeof numbers, "%d,%.6f,%.6f,%.3f", r.seed, r.test_accuracy, r.train_loss, r.seconds);
    return std::to_string(r.shots) + "," + r.lr + "," + std::to_string(r.epochs) + "," + r.method + "," + r.p + "," +
           numbers + "," + r.setup + "\n";
}

} // namespace

std::string key_number(double x) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", x);
    return text;
}

std::vector<run_row> read_runs(const std::filesystem::path& path, std::string* warning) {
    std::vector<run_row> out;
    std::ifstream in(path, std::ios::binary);
    if (!in) return out;
    std::stringstream all;
    all << in.rdbuf();
    std::string text = all.str();
    if (!text.empty() && text.back() != '\n') {
        const auto cut = text.rfind('\n');
        if (warning)
            *warning = path.string() + ": its last line has no newline (a write cut short): left out, '" +
                       text.substr(cut == std::string::npos ? 0 : cut + 1) + "'";
        text.resize(cut == std::string::npos ? 0 : cut + 1);
    }
    std::istringstream lines(text);
    std::string line;
    int number = 0;
    while (std::getline(lines, line)) {
        ++number;
        if (number == 1) {
            if (line != runs_header)
                throw std::runtime_error(path.string() + ": not a runs log: its header is '" + line + "', expected '" +
                                         runs_header + "'");
            continue;
        }
        const auto f = split_fields(line);
        try {
            if (f.size() != 10) throw std::invalid_argument(std::to_string(f.size()) + " fields, expected 10");
            run_row r;
            r.shots = parse_number<int>(f[0], "K");
            r.lr = f[1];
            parse_number<double>(r.lr, "lr");
            r.epochs = parse_number<int>(f[2], "epochs");
            r.method = f[3];
            if (r.method.empty()) throw std::invalid_argument("an empty method");
            r.p = f[4];
            if (!r.p.empty()) parse_number<double>(r.p, "p");
            r.seed = parse_number<int>(f[5], "seed");
            r.test_accuracy = parse_number<double>(f[6], "test_accuracy");
            r.train_loss = parse_number<double>(f[7], "train_loss");
            r.seconds = parse_number<double>(f[8], "seconds");
            r.setup = f[9];
            out.push_back(std::move(r));
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(path.string() + ":" + std::to_string(number) + ": malformed row '" + line +
                                     "' (" + e.what() + ")");
        }
    }
    return out;
}

runs_log::runs_log(std::filesystem::path path, std::string setup) : path_(std::move(path)), setup_(std::move(setup)) {
    std::string warning;
    const auto rows = read_runs(path_, &warning);
    if (!warning.empty()) {
        // Drop the cut line, so the next row starts on a line of its own.
        std::fprintf(stderr, "%s\n", warning.c_str());
        std::ifstream in(path_, std::ios::binary);
        std::stringstream all;
        all << in.rdbuf();
        const std::string text = all.str();
        const auto cut = text.rfind('\n');
        std::filesystem::resize_file(path_, cut == std::string::npos ? 0 : cut + 1);
    }
    for (const auto& r : rows) {
        if (r.setup != setup_)
            throw std::runtime_error(path_.string() + " holds runs of another setup ('" + r.setup + "', this run: '" +
                                     setup_ + "'): give this run another --runs-csv");
        rows_[r.key()] = r;
    }
    if (!std::filesystem::exists(path_) || std::filesystem::file_size(path_) == 0) {
        if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
        std::ofstream out(path_, std::ios::trunc);
        out << runs_header << "\n";
        if (!out.flush()) throw std::runtime_error("cannot write " + path_.string());
    }
}

std::optional<run_row> runs_log::find(const run_row& key) const {
    const auto it = rows_.find(key.key());
    if (it == rows_.end()) return std::nullopt;
    return it->second;
}

void runs_log::append(run_row row) {
    row.setup = setup_;
    const std::string line = format_row(row);
    // One write of one short line in append mode: a kill leaves the line whole
    // or absent (read_runs drops a cut one anyway).
    std::FILE* f = std::fopen(path_.string().c_str(), "ab");
    if (!f) throw std::runtime_error("cannot append to " + path_.string());
    const bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size();
    if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot append to " + path_.string());
    rows_[row.key()] = std::move(row);
}

} // namespace fashion_mnist
