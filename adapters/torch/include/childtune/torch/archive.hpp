#pragma once
//! \file
//! The LibTorch optimizers' entries in a `torch::serialize` archive: the core
//! state file as a byte tensor, and (archives of 0.1) the ATen path's state kept
//! beside it. A missing or mistyped entry is a childtune::error naming it
//! (LibTorch would throw its own ObjectAttributeError or c10::Error), and so is
//! a damaged archive read through load_optimizer().

#include <childtune/error.hpp>
#include <childtune/registry/options.hpp>

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace childtune::torch {

//! A 0.1 archive's ATen-path state of one tensor: its steps and state buffers.
struct legacy_tensor_state {
    //! Registration index of the tensor.
    std::size_t tensor = 0;
    //! Steps the tensor had taken.
    std::uint64_t steps = 0;
    //! Its state buffers (moments, momentum), as the 0.1 archive stored them.
    std::vector<at::Tensor> state;
};

namespace detail {

//! The first line of a LibTorch exception's message (c10::Error appends a C++
//! backtrace to it).
inline std::string first_line(const char* what) {
    std::string s(what);
    return s.substr(0, s.find('\n'));
}

//! Runs `read` (LibTorch's archive reading); its exceptions (c10::Error, the
//! std::out_of_range of a damaged pickle, std::bad_alloc of a forged size)
//! become childtune::error naming `what`.
template <class F>
decltype(auto) archive_call(const std::string& what, F&& read) {
    try {
        return read();
    } catch (const childtune::error&) {
        throw;
    } catch (const std::exception& e) {
        childtune::detail::fail(what + " is corrupt or not a LibTorch archive: " + first_line(e.what()));
    }
}

inline at::Tensor read_tensor(::torch::serialize::InputArchive& archive, const std::string& key) {
    at::Tensor t;
    if (!archive_call("optimizer archive", [&] { return archive.try_read(key, t); }))
        childtune::detail::fail("optimizer archive: no tensor '" + key + "' (not a childtune archive?)");
    return t;
}
inline std::int64_t read_int(::torch::serialize::InputArchive& archive, const std::string& key) {
    c10::IValue v;
    if (!archive_call("optimizer archive", [&] { return archive.try_read(key, v); }))
        childtune::detail::fail("optimizer archive: no entry '" + key + "' (not a childtune archive?)");
    if (!v.isInt()) childtune::detail::fail("optimizer archive: '" + key + "' is a " + v.tagKind() + ", not an integer");
    return v.toInt();
}

//! Writes the core state file; no ATen-path state beside it (since 0.2 the
//! core file holds every tensor's state).
inline void write_core_state(::torch::serialize::OutputArchive& archive, const std::string& bytes) {
    archive.write("childtune/state",
                  at::from_blob(const_cast<char*>(bytes.data()), {static_cast<std::int64_t>(bytes.size())}, at::kByte).clone());
    archive.write("childtune/device_tensors", c10::IValue(std::int64_t{0}));
}

inline std::string read_core_state(::torch::serialize::InputArchive& archive) {
    at::Tensor blob = read_tensor(archive, "childtune/state");
    if (blob.scalar_type() != at::kByte || blob.dim() != 1)
        childtune::detail::fail("optimizer archive: 'childtune/state' is not a byte tensor");
    blob = blob.contiguous();
    return blob.numel() == 0 ? std::string()
                             : std::string(static_cast<const char*>(blob.data_ptr()), static_cast<std::size_t>(blob.numel()));
}

//! The ATen-path state a 0.1 archive keeps beside the core file, for the tensors
//! it belongs to: entry k is the k-th tensor that 0.1 stepped on that path
//! (every tensor of an optimizer on another device or forced onto it); with as
//! many entries as tensors, entry k is tensor k.
template <class ParamAt, class OnAten>
std::vector<legacy_tensor_state> read_legacy_device_state(::torch::serialize::InputArchive& archive,
                                                          const std::vector<std::string>& names, ParamAt&& param_at,
                                                          OnAten&& on_aten) {
    const std::int64_t count = read_int(archive, "childtune/device_tensors");
    std::vector<std::size_t> targets;
    for (std::size_t flat = 0; flat < names.size(); ++flat)
        if (count == static_cast<std::int64_t>(names.size()) || on_aten(flat)) targets.push_back(flat);
    if (count < 0 || (count > 0 && targets.size() != static_cast<std::size_t>(count)))
        childtune::detail::fail("optimizer archive holds " + std::to_string(count) + " device tensors, this optimizer has " +
                                std::to_string(targets.size()));
    std::vector<legacy_tensor_state> out;
    for (std::int64_t k = 0; k < count; ++k) {
        const std::string key = "childtune/device/" + std::to_string(k) + "/";
        const std::size_t flat = targets[static_cast<std::size_t>(k)];
        const std::int64_t steps = read_int(archive, key + "steps");
        const std::int64_t buffers = read_int(archive, key + "buffers");
        if (steps < 0 || buffers < 0 || buffers > 2)
            childtune::detail::fail("optimizer archive is corrupt: '" + names[flat] + "' has " + std::to_string(steps) +
                                    " steps and " + std::to_string(buffers) + " state buffers");
        legacy_tensor_state s{flat, static_cast<std::uint64_t>(steps), {}};
        for (std::int64_t b = 0; b < buffers; ++b) {
            at::Tensor t = read_tensor(archive, key + std::to_string(b));
            if (t.numel() != param_at(flat).numel())
                childtune::detail::fail("optimizer archive: state of '" + names[flat] + "' has " + std::to_string(t.numel()) +
                                        " elements, the parameter " + std::to_string(param_at(flat).numel()));
            s.state.push_back(t);
        }
        out.push_back(std::move(s));
    }
    return out;
}

} // namespace detail

//! `torch::load(optimizer, source)` for a Child-Tuning optimizer, whose every
//! failure is a childtune::error: LibTorch's own reader throws c10::Error,
//! std::out_of_range or std::bad_alloc for a damaged archive before the
//! optimizer sees it. `source` is a path or a std::istream; `options` as the
//! optimizer's load(archive, options). Nothing changes when it throws.
template <class Optimizer, class Source>
void load_optimizer(Optimizer& optimizer, Source&& source, const load_options& options = {}) {
    std::string what = "optimizer archive";
    if constexpr (std::is_convertible_v<Source, std::string>) what += " '" + std::string(source) + "'";
    ::torch::serialize::InputArchive archive;
    detail::archive_call(what, [&] { archive.load_from(std::forward<Source>(source)); });
    optimizer.load(archive, options);
}

} // namespace childtune::torch
