#pragma once
//! \file
//! Reading the gzipped IDX files of (Fashion-)MNIST, without LibTorch: this
//! translation unit compiles in a second, the torch one in twenty.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion_mnist {

//! Images as rows*cols bytes each (0 = background), labels 0..9, in file order.
struct split {
    std::size_t rows = 0, cols = 0;
    std::vector<std::uint8_t> pixels;
    std::vector<std::uint8_t> labels;

    std::size_t size() const { return labels.size(); }
    std::size_t image_size() const { return rows * cols; }
    const std::uint8_t* image(std::size_t i) const { return pixels.data() + i * image_size(); }
};

//! The dataset's files are missing; the program turns this into its own exit code.
struct missing_data : std::runtime_error {
    using std::runtime_error::runtime_error;
};

//! The four file names under `dir` that a split needs, e.g. "train" or "t10k".
std::filesystem::path images_file(const std::filesystem::path& dir, const std::string& split_name);
std::filesystem::path labels_file(const std::filesystem::path& dir, const std::string& split_name);

//! Reads `<dir>/<split_name>-images-idx3-ubyte.gz` and the matching labels.
//! Throws missing_data when a file does not exist, std::runtime_error when a file
//! is truncated, corrupt or the two disagree in length.
split load(const std::filesystem::path& dir, const std::string& split_name);

} // namespace fashion_mnist
