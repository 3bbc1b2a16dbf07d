#pragma once
// A communicator (concepts.hpp) over threads of one process: rank r of a
// group of `world` threads. Collectives meet at a barrier; each copies its
// contribution into shared slots and reads the others' after the next barrier.

#include <childtune/concepts.hpp>

#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace test_comm {

struct shared_group {
    explicit shared_group(std::size_t n) : world(n), meet(static_cast<std::ptrdiff_t>(n)), slots(n) {}
    std::size_t world;
    std::barrier<> meet;
    std::vector<std::vector<std::byte>> slots;
};

class thread_communicator {
public:
    thread_communicator(std::shared_ptr<shared_group> g, std::size_t rank) : g_(std::move(g)), rank_(rank) {}
    std::size_t rank() const { return rank_; }
    std::size_t size() const { return g_->world; }
    template <class T>
    void all_reduce_sum(std::span<T> x) const {
        const auto all = exchange(std::as_bytes(x));
        for (std::size_t i = 0; i < x.size(); ++i) {
            T s{};
            for (std::size_t r = 0; r < size(); ++r) {
                T v;
                std::memcpy(&v, all[r].data() + i * sizeof(T), sizeof(T));
                s += v;
            }
            x[i] = s;
        }
    }
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all, std::span<const std::size_t>) const {
        const auto parts = exchange(mine);
        std::size_t at = 0;
        for (const auto& p : parts) {
            if (!p.empty()) std::memcpy(all.data() + at, p.data(), p.size());
            at += p.size();
        }
    }
    void broadcast(std::span<std::byte> bytes, std::size_t root) const {
        const auto parts = exchange(bytes);
        if (!bytes.empty()) std::memcpy(bytes.data(), parts[root].data(), bytes.size());
    }

private:
    std::vector<std::vector<std::byte>> exchange(std::span<const std::byte> mine) const {
        g_->meet.arrive_and_wait();
        g_->slots[rank_].assign(mine.begin(), mine.end());
        g_->meet.arrive_and_wait();
        auto out = g_->slots;
        g_->meet.arrive_and_wait();
        return out;
    }
    std::shared_ptr<shared_group> g_;
    std::size_t rank_;
};

static_assert(childtune::communicator<thread_communicator>);

inline std::vector<thread_communicator> in_process_group(std::size_t world) {
    auto g = std::make_shared<shared_group>(world);
    std::vector<thread_communicator> out;
    for (std::size_t r = 0; r < world; ++r) out.emplace_back(g, r);
    return out;
}

} // namespace test_comm
