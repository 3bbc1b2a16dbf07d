#include "idx.hpp"

#include <zlib.h>

#include <array>
#include <memory>

namespace fashion_mnist {
namespace {

//! The whole decompressed content of a gzip file (a plain file reads as itself).
std::vector<std::uint8_t> read_gzip(const std::filesystem::path& path) {
    if (!std::filesystem::exists(path)) throw missing_data("missing file " + path.string());
    const std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
    if (!file) throw std::runtime_error("cannot open " + path.string());
    std::vector<std::uint8_t> out;
    std::array<std::uint8_t, 1 << 16> chunk{};
    for (;;) {
        const int n = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
        if (n < 0) {
            int code = 0;
            const char* message = gzerror(file.get(), &code);
            throw std::runtime_error(path.string() + ": " + (message ? message : "read error"));
        }
        if (n == 0) break;
        out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    }
    return out;
}

std::uint32_t big_endian_u32(const std::vector<std::uint8_t>& bytes, std::size_t at) {
    return std::uint32_t{bytes[at]} << 24 | std::uint32_t{bytes[at + 1]} << 16 | std::uint32_t{bytes[at + 2]} << 8 |
           std::uint32_t{bytes[at + 3]};
}

//! Checks the IDX header (magic 0x0000 08 <rank>: unsigned bytes) and returns
//! the dimensions; the payload must be exactly their product.
std::vector<std::size_t> idx_dims(const std::vector<std::uint8_t>& bytes, std::uint8_t rank,
                                  const std::filesystem::path& path) {
    const std::size_t header = 4 + 4 * std::size_t{rank};
    if (bytes.size() < header || big_endian_u32(bytes, 0) != (0x0800u | rank))
        throw std::runtime_error(path.string() + ": not an IDX file of unsigned bytes with " + std::to_string(rank) +
                                 " dimension(s)");
    std::vector<std::size_t> dims;
    std::size_t payload = 1;
    for (std::uint8_t d = 0; d < rank; ++d) {
        dims.push_back(big_endian_u32(bytes, 4 + 4 * std::size_t{d}));
        payload *= dims.back();
    }
    if (bytes.size() - header != payload)
        throw std::runtime_error(path.string() + ": expected " + std::to_string(payload) + " bytes of data, found " +
                                 std::to_string(bytes.size() - header));
    return dims;
}

} // namespace

std::filesystem::path images_file(const std::filesystem::path& dir, const std::string& split_name) {
    return dir / (split_name + "-images-idx3-ubyte.gz");
}
std::filesystem::path labels_file(const std::filesystem::path& dir, const std::string& split_name) {
    return dir / (split_name + "-labels-idx1-ubyte.gz");
}

split load(const std::filesystem::path& dir, const std::string& split_name) {
    const auto image_path = images_file(dir, split_name);
    const auto label_path = labels_file(dir, split_name);
    std::vector<std::uint8_t> images = read_gzip(image_path);
    std::vector<std::uint8_t> labels = read_gzip(label_path);
    const auto image_dims = idx_dims(images, 3, image_path);
    const auto label_dims = idx_dims(labels, 1, label_path);
    if (image_dims[0] != label_dims[0])
        throw std::runtime_error(image_path.string() + " holds " + std::to_string(image_dims[0]) + " images but " +
                                 label_path.string() + " " + std::to_string(label_dims[0]) + " labels");
    split s;
    s.rows = image_dims[1];
    s.cols = image_dims[2];
    s.pixels.assign(images.begin() + 16, images.end());
    s.labels.assign(labels.begin() + 8, labels.end());
    for (const auto label : s.labels)
        if (label > 9) throw std::runtime_error(label_path.string() + ": label " + std::to_string(label) + " is not 0..9");
    return s;
}

} // namespace fashion_mnist
