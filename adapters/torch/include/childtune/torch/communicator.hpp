#pragma once
//! \file
//! childtune::torch::communicator — the distributed communicator
//! (distributed/communicator.hpp) over a LibTorch c10d process group, so the
//! sharded optimizer and the distributed Fisher selection run on the process
//! group a LibTorch program already has: Gloo on CPU, NCCL on GPUs, or any
//! other c10d backend.
//!
//! childtune's collectives work on host memory; the communicator stages them
//! through tensors on `device` (c10d backends want their own kind of tensor:
//! CPU for Gloo, CUDA for NCCL). On the CPU the host memory is wrapped without
//! a copy.
//!
//! Every collective waits for completion. A failure of the backend — including
//! the process group's timeout, when a peer died or stopped calling
//! collectives — throws childtune::error naming the operation and the rank, so
//! a lost rank ends in an error, not a hang (set the timeout with the process
//! group's options, e.g. c10d::ProcessGroupGloo::Options::timeout).
//!
//! Only this header is needed; it does not include <torch/torch.h>. Debian's
//! LibTorch 1.13 and LibTorch 2.x both work: the class template takes the
//! group type, c10d::ProcessGroup (1.13's backends derive from it; 2.x wraps
//! them) or a 2.x c10d::Backend such as c10d::ProcessGroupGloo.

#include <childtune/distributed/communicator.hpp>
#include <childtune/error.hpp>

#include <ATen/ATen.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

namespace childtune::torch {

//! The communicator concept over a c10d process group (Gloo, NCCL, or any c10d
//! backend): every collective waits, and a backend failure or timeout throws
//! childtune::error naming the operation and rank.
template <class Group = c10d::ProcessGroup>
class communicator {
public:
    //! Wraps `group` (shared: the caller keeps its own reference). `device`
    //! is where the collectives' tensors live: at::kCPU for Gloo, the rank's
    //! CUDA device for NCCL.
    explicit communicator(c10::intrusive_ptr<Group> group, at::Device device = at::kCPU)
        : group_(std::move(group)), device_(device) {
        if (!group_) detail::fail("torch::communicator: the process group is null");
        const int r = group_->getRank(), s = group_->getSize();
        if (s <= 0 || r < 0 || r >= s)
            detail::fail("torch::communicator: rank " + std::to_string(r) + " of a group of " + std::to_string(s));
        rank_ = static_cast<std::size_t>(r);
        size_ = static_cast<std::size_t>(s);
    }

    //! This process's rank in the group.
    std::size_t rank() const { return rank_; }
    //! Number of ranks in the group.
    std::size_t size() const { return size_; }
    //! The wrapped process group.
    const c10::intrusive_ptr<Group>& group() const { return group_; }
    //! Where the collectives' tensors are staged (CPU for Gloo, CUDA for NCCL).
    at::Device device() const { return device_; }

    //! Element-wise sum over the ranks, in place (as float).
    void all_reduce_sum(std::span<float> x) const { reduce(x.data(), x.size(), at::kFloat); }
    //! Element-wise sum over the ranks, in place (as double).
    void all_reduce_sum(std::span<double> x) const { reduce(x.data(), x.size(), at::kDouble); }
    //! As int64: two's-complement sums are the unsigned sums modulo 2^64.
    void all_reduce_sum(std::span<std::uint64_t> x) const { reduce(x.data(), x.size(), at::kLong); }

    //! Variable-size byte blocks in rank order. c10d's all-gather wants the same
    //! size from every rank, so each block travels padded to the largest.
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all, std::span<const std::size_t> counts) const {
        detail::check_all_gather("torch::communicator", rank_, size_, mine.size(), all.size(), counts);
        const std::size_t widest = *std::max_element(counts.begin(), counts.end());
        if (widest == 0) return;
        run("allgather", [&] {
            at::Tensor sent = at::zeros({static_cast<std::int64_t>(widest)}, options(at::kByte));
            if (!mine.empty()) sent.narrow(0, 0, static_cast<std::int64_t>(mine.size())).copy_(host(mine));
            std::vector<at::Tensor> in{sent};
            std::vector<std::vector<at::Tensor>> out(1);
            for (std::size_t r = 0; r < size_; ++r) out[0].push_back(at::empty({static_cast<std::int64_t>(widest)}, options(at::kByte)));
            group_->allgather(out, in)->wait();
            std::size_t at = 0;
            for (std::size_t r = 0; r < size_; ++r) {
                if (counts[r] > 0) {
                    const auto n = static_cast<std::int64_t>(counts[r]);
                    host(all.subspan(at, counts[r])).copy_(out[0][r].narrow(0, 0, n));
                }
                at += counts[r];
            }
        });
    }

    //! Rank `root`'s bytes overwrite the others'.
    void broadcast(std::span<std::byte> bytes, std::size_t root) const {
        detail::check_broadcast_root("torch::communicator", root, size_);
        if (bytes.empty()) return;
        run("broadcast", [&] {
            at::Tensor t = staged(bytes.data(), bytes.size(), at::kByte);
            std::vector<at::Tensor> v{t};
            c10d::BroadcastOptions o;
            o.rootRank = static_cast<std::int64_t>(root);
            group_->broadcast(v, o)->wait();
            copy_back(t, bytes.data(), bytes.size(), at::kByte);
        });
    }

private:
    at::TensorOptions options(at::ScalarType type) const { return at::TensorOptions().dtype(type).device(device_); }
    //! A CPU tensor over host bytes (no copy).
    static at::Tensor host(std::span<const std::byte> bytes) {
        return at::from_blob(const_cast<std::byte*>(bytes.data()), {static_cast<std::int64_t>(bytes.size())},
                             at::TensorOptions().dtype(at::kByte));
    }
    //! `n` elements of `type` at `data` as a tensor on the device: the host
    //! memory itself on the CPU, a copy elsewhere.
    at::Tensor staged(void* data, std::size_t n, at::ScalarType type) const {
        at::Tensor h = at::from_blob(data, {static_cast<std::int64_t>(n)}, at::TensorOptions().dtype(type));
        return device_.is_cpu() ? h : h.to(device_);
    }
    void copy_back(const at::Tensor& t, void* data, std::size_t n, at::ScalarType type) const {
        if (device_.is_cpu()) return;
        at::from_blob(data, {static_cast<std::int64_t>(n)}, at::TensorOptions().dtype(type)).copy_(t);
    }
    void reduce(void* data, std::size_t n, at::ScalarType type) const {
        if (n == 0) return;
        run("allreduce", [&] {
            at::Tensor t = staged(data, n, type);
            std::vector<at::Tensor> v{t};
            c10d::AllreduceOptions o;
            o.reduceOp = c10d::ReduceOp::SUM;
            group_->allreduce(v, o)->wait();
            copy_back(t, data, n, type);
        });
    }
    //! Runs one collective; LibTorch's and the backend's exceptions become
    //! childtune::error naming the operation and this rank.
    template <class F>
    void run(const char* what, F&& f) const {
        try {
            f();
        } catch (const error&) {
            throw;
        } catch (const std::exception& e) {
            fail(std::string(what) + " failed: " + first_line(e.what()));
        }
    }
    //! LibTorch's messages carry a C++ backtrace after the first line.
    static std::string first_line(const char* text) {
        std::string s(text);
        if (const auto end = s.find('\n'); end != std::string::npos) s.resize(end);
        return s;
    }
    [[noreturn]] void fail(const std::string& message) const {
        detail::fail("torch::communicator: " + message + " [rank " + std::to_string(rank_) + " of " + std::to_string(size_) + "]");
    }

    c10::intrusive_ptr<Group> group_;
    at::Device device_;
    std::size_t rank_ = 0;
    std::size_t size_ = 1;
};

static_assert(childtune::communicator<communicator<>>);

} // namespace childtune::torch
