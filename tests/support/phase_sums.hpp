#pragma once
// The kernel tests' helpers for comparing bits, and the end of a rule's
// per-tensor phase (LAMB's norms) done the same way on both sides of a
// comparison: so two steps apply the same trust ratio exactly when their
// block sums agree, which the tests check bit for bit.

#include <childtune/update/rule_traits.hpp>

#include <array>
#include <cstddef>
#include <cstring>
#include <vector>

namespace test_support {

//! Whether two vectors hold the same bits. (Empty vectors may hold null
//! pointers, which memcmp must not be given.)
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

//! The block sums (Rule::reduction_count per 64-element block, blocks in order)
//! added up per reduction, then Rule::finish on the tensor's sums.
template <class Rule, class Constants>
void finish_phase(Constants& c, const std::vector<double>& blocks) {
    constexpr std::size_t reductions = childtune::detail::rule_reduction_count<Rule>();
    std::array<double, reductions> sums{};
    for (std::size_t k = 0; k < blocks.size(); ++k) sums[k % reductions] += blocks[k];
    Rule::finish(c, sums);
}

} // namespace test_support
