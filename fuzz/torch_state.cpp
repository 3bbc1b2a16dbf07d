//! libFuzzer target (built with g++): the LibTorch adapter's optimizer loader,
//! `torch::load(optimizer, ...)` -> child_tuning_optimizer::load(InputArchive&).
//!
//! LibTorch's own zip and pickle readers are LibTorch's to fuzz; what childtune
//! owns is what it does with an archive's contents. So the input describes an
//! archive's contents, and the harness builds a well-formed archive from them
//! with LibTorch's OutputArchive, serializes it and loads it back:
//!
//!   u8   flags: 1 ATen path (every tensor keeps device state), 2 fix up the
//!        core state's trailing checksum, 4 omit 'childtune/state', 8 omit
//!        'childtune/device_tensors', 16 store the core state as float, 32 store
//!        the tensor count as a string
//!   i64  device tensor count
//!   per device tensor (at most 8): u8 omissions (1 steps, 2 buffers),
//!        i64 steps, i64 buffer count, then per buffer (at most 3): u8 dtype
//!        (float, double, half, uint8, int64), u16 element count, the elements
//!   rest the core optimizer state file
//!
//! Missing bytes read as zero. Oracle: a rejected archive throws childtune::error
//! or c10::Error and leaves the optimizer's saved archive byte-identical; an
//! accepted one saves to an archive that loads again to the same bytes, and the
//! optimizer can still step.
#include "support/harness.hpp"

#include <childtune/torch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace ct = childtune;

struct NetImpl : ::torch::nn::Module {
    ::torch::nn::Linear enc{nullptr}, head{nullptr};
    NetImpl() {
        enc = register_module("enc", ::torch::nn::Linear(5, 7));
        head = register_module("head", ::torch::nn::Linear(7, 2));
    }
};
TORCH_MODULE(Net);

struct subject {
    Net net;
    ct::torch::ChildTuningAdamW opt;

    explicit subject(bool aten)
        : net(make_net()),
          opt(net->named_parameters(), ct::torch::ChildTuningAdamWOptions(1e-2).weight_decay(0.01),
              ct::bernoulli{0.5, 9}, ct::torch::name_contains("enc")) {
        opt.force_aten_path(aten);
    }
    static Net make_net() {
        ::torch::manual_seed(5);
        return Net();
    }
    void step(int t) {
        opt.zero_grad();
        const auto x = ::torch::linspace(-1.0, 1.0 + 0.1 * t, 15).reshape({3, 5});
        net->head(net->enc(x).tanh()).square().sum().backward();
        opt.step();
    }
};

std::string archive_bytes(const ::torch::optim::Optimizer& opt) {
    std::ostringstream out;
    ::torch::serialize::OutputArchive archive;
    opt.save(archive);
    archive.save_to(out);
    return out.str();
}

//! Sequential little-endian reader; missing bytes read as zero.
class byte_reader {
public:
    byte_reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    template <class T>
    T value() {
        T v{};
        std::uint8_t b[sizeof(T)] = {};
        for (auto& x : b) x = pos_ < size_ ? data_[pos_++] : 0;
        std::memcpy(&v, b, sizeof(T));
        return v;
    }
    std::string bytes(std::size_t n) {
        const std::size_t take = std::min(n, size_ - pos_);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), take);
        pos_ += take;
        s.resize(n, '\0');
        return s;
    }
    std::string rest() { return bytes(size_ - pos_); }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

const at::ScalarType dtypes[] = {at::kFloat, at::kDouble, at::kHalf, at::kByte, at::kLong};

//! The archive the input describes (see the file comment), serialized.
std::string archive_from_input(const std::uint8_t* data, std::size_t size, bool& aten) {
    byte_reader in(data, size);
    const auto flags = in.value<std::uint8_t>();
    aten = flags & 1u;
    ::torch::serialize::OutputArchive archive;
    const auto count = in.value<std::int64_t>();
    if (flags & 32u)
        archive.write("childtune/device_tensors", c10::IValue(std::to_string(count)));
    else if (!(flags & 8u))
        archive.write("childtune/device_tensors", c10::IValue(count));
    for (std::int64_t i = 0; i < std::clamp<std::int64_t>(count, 0, 8); ++i) {
        const std::string key = "childtune/device/" + std::to_string(i) + "/";
        const auto omit = in.value<std::uint8_t>();
        const auto steps = in.value<std::int64_t>();
        const auto buffers = in.value<std::int64_t>();
        if (!(omit & 1u)) archive.write(key + "steps", c10::IValue(steps));
        if (!(omit & 2u)) archive.write(key + "buffers", c10::IValue(buffers));
        for (std::int64_t b = 0; b < std::clamp<std::int64_t>(buffers, 0, 3); ++b) {
            const at::ScalarType type = dtypes[in.value<std::uint8_t>() % 5];
            const auto n = static_cast<std::int64_t>(in.value<std::uint16_t>() % 4096);
            at::Tensor t = at::empty({n}, at::TensorOptions().dtype(type));
            const std::string raw = in.bytes(t.nbytes());
            if (!raw.empty()) std::memcpy(t.data_ptr(), raw.data(), raw.size()); // an empty tensor has no data pointer
            archive.write(key + std::to_string(b), t);
        }
    }
    std::string state = in.rest();
    if (flags & 2u) ct::fuzz::fix_trailing_checksum(state);
    if (!(flags & 4u)) {
        at::Tensor blob = at::empty({static_cast<std::int64_t>(state.size())}, at::kByte);
        if (!state.empty()) std::memcpy(blob.data_ptr(), state.data(), state.size());
        archive.write("childtune/state", (flags & 16u) ? blob.to(at::kFloat) : blob);
    }
    std::ostringstream out;
    archive.save_to(out);
    return out.str();
}

//! The input that describes `opt`'s own archive (the encoding above, inverted).
std::string input_from_optimizer(const ::torch::optim::Optimizer& opt, bool aten) {
    std::istringstream saved(archive_bytes(opt));
    ::torch::serialize::InputArchive archive;
    archive.load_from(saved);
    std::string out;
    auto put = [&out](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(static_cast<std::uint8_t>(aten ? 1 : 0));
    c10::IValue v;
    archive.read("childtune/device_tensors", v);
    const std::int64_t count = v.toInt();
    put(count);
    for (std::int64_t i = 0; i < count; ++i) {
        const std::string key = "childtune/device/" + std::to_string(i) + "/";
        put(std::uint8_t{0});
        archive.read(key + "steps", v);
        put(v.toInt());
        archive.read(key + "buffers", v);
        const std::int64_t buffers = v.toInt();
        put(buffers);
        for (std::int64_t b = 0; b < buffers; ++b) {
            at::Tensor t;
            archive.read(key + std::to_string(b), t);
            t = t.contiguous();
            put(static_cast<std::uint8_t>(std::find(std::begin(dtypes), std::end(dtypes), t.scalar_type()) - std::begin(dtypes)));
            put(static_cast<std::uint16_t>(t.numel()));
            if (t.nbytes() > 0) out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
        }
    }
    at::Tensor blob;
    archive.read("childtune/state", blob);
    out.append(static_cast<const char*>(blob.data_ptr()), static_cast<std::size_t>(blob.numel()));
    return out;
}

void load(::torch::optim::Optimizer& opt, const std::string& bytes) {
    std::istringstream in(bytes);
    ::torch::serialize::InputArchive archive;
    archive.load_from(in);
    opt.load(archive);
}

bool load_and_check(const std::uint8_t* data, std::size_t size) {
    bool aten = false;
    const std::string archive = archive_from_input(data, size, aten);
    subject s(aten);
    s.step(0); // state exists before the load, so "unchanged" means something
    const std::string before = archive_bytes(s.opt);
    try {
        load(s.opt, archive);
    } catch (const ct::error&) {
        ct::fuzz::require(archive_bytes(s.opt) == before, "a rejected load changed the optimizer's state");
        return false;
    } catch (const c10::Error&) {
        ct::fuzz::require(archive_bytes(s.opt) == before, "a rejected load changed the optimizer's state");
        return false;
    }
    const std::string again = archive_bytes(s.opt);
    subject twin(aten);
    load(twin.opt, again); // an archive the optimizer wrote must load
    ct::fuzz::require(archive_bytes(twin.opt) == again, "an accepted archive does not survive save/load unchanged");
    s.step(1); // whatever was loaded, a step must not misbehave
    return true;
}

ct::fuzz::seed_map make_seeds() {
    ct::fuzz::seed_map seeds;
    for (bool aten : {false, true})
        for (int steps : {1, 3}) {
            subject s(aten);
            for (int t = 0; t < steps; ++t) s.step(t);
            seeds[std::string("valid-") + (aten ? "aten" : "cpu") + "-steps" + std::to_string(steps)] =
                input_from_optimizer(s.opt, aten);
        }
    return seeds;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    ct::fuzz::seed_hooks(make_seeds, [](const std::string& input) {
        return load_and_check(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
    });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    load_and_check(data, size);
    return 0;
}
