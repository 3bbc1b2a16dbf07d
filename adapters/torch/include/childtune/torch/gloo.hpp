#pragma once
//! \file
//! A Gloo process group in one call, for childtune::torch::communicator on CPU
//! (and for tests on one machine): LibTorch's c10d::ProcessGroupGloo over a
//! c10d::Store (FileStore on a shared file system, TCPStore across hosts).
//!
//! LibTorch declares ProcessGroupGloo only when USE_C10D_GLOO is defined (its
//! CMake package does not define it), so this header defines it. Include it
//! before any other include of ProcessGroupGloo.hpp in the translation unit.
//! Linking needs a LibTorch built with Gloo (Debian's and PyTorch's are) and
//! Gloo's headers to compile (Debian: libgloo-dev).

#ifndef USE_C10D_GLOO
//! Makes LibTorch declare c10d::ProcessGroupGloo (see above).
#define USE_C10D_GLOO 1
#endif

#include <childtune/error.hpp>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace childtune::torch {

//! A Gloo group of `size` processes, this one `rank`, meeting through `store`.
//! `timeout` bounds every collective: a peer that died or stopped calling
//! collectives makes the others' calls fail after it instead of hanging.
//! `hostname` picks the interface to bind ("127.0.0.1": loopback only); empty,
//! Gloo's default (the interface of this host's name).
inline c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                             int size, std::chrono::milliseconds timeout,
                                                             const std::string& hostname = {}) {
    if (!store) detail::fail("gloo_group: the store is null");
    if (size <= 0 || rank < 0 || rank >= size)
        detail::fail("gloo_group: rank " + std::to_string(rank) + " of a group of " + std::to_string(size));
    if (timeout.count() <= 0) detail::fail("gloo_group: the timeout must be positive");
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(hostname.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                                : c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

} // namespace childtune::torch
