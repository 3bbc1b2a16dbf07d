#pragma once
// The rank test cases (rank_cases.cpp) are compiled once, for this
// communicator, and linked into every engine's test program (MPI, c10d): each
// program wraps its engine's communicator in communicator_ref and returns it
// from test_comm(). The sharded optimizer and the distributed Fisher selection
// see the engine's collectives through one virtual call each, with the same
// arguments and results; what differs between engines is only which program
// links the cases.

#include <childtune/distributed/communicator.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace dist_test {

class any_communicator {
public:
    virtual ~any_communicator() = default;
    virtual std::size_t rank() const = 0;
    virtual std::size_t size() const = 0;
    virtual void all_reduce_sum(std::span<float> x) const = 0;
    virtual void all_reduce_sum(std::span<double> x) const = 0;
    virtual void all_reduce_sum(std::span<std::uint64_t> x) const = 0;
    virtual void all_gather(std::span<const std::byte> mine, std::span<std::byte> all,
                            std::span<const std::size_t> counts) const = 0;
    virtual void broadcast(std::span<std::byte> bytes, std::size_t root) const = 0;
};

//! An engine's communicator behind any_communicator (not owned).
template <childtune::communicator C>
class communicator_ref final : public any_communicator {
public:
    explicit communicator_ref(const C& c) : c_(&c) {}
    std::size_t rank() const override { return c_->rank(); }
    std::size_t size() const override { return c_->size(); }
    void all_reduce_sum(std::span<float> x) const override { c_->all_reduce_sum(x); }
    void all_reduce_sum(std::span<double> x) const override { c_->all_reduce_sum(x); }
    void all_reduce_sum(std::span<std::uint64_t> x) const override { c_->all_reduce_sum(x); }
    void all_gather(std::span<const std::byte> mine, std::span<std::byte> all,
                    std::span<const std::size_t> counts) const override {
        c_->all_gather(mine, all, counts);
    }
    void broadcast(std::span<std::byte> bytes, std::size_t root) const override { c_->broadcast(bytes, root); }

private:
    const C* c_;
};

static_assert(childtune::communicator<any_communicator>);

} // namespace dist_test

//! This rank's communicator: defined by each engine's test program.
const dist_test::any_communicator& test_comm();
