#pragma once
//! \file
//! What a mask policy is told about a tensor: the identity its keep decisions may
//! depend on, and nothing that differs between backends, threads or ranks.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace childtune {

//! A registered tensor as mask policies see it. A registration may be a slice of
//! a larger logical tensor (a rank's shard): `size` is the logical tensor's
//! element count, what its masks cover, and the view's element i is element
//! `offset + i` of it. Masks are defined on logical indices, so every slicing of
//! a tensor sees the same decisions.
struct tensor_info {
    std::string_view name;       //!< unique within the optimizer
    std::uint32_t key = 0;       //!< stable key (FNV-1a of the name unless given): Bernoulli counter word 2
    std::size_t group = 0;       //!< index of its parameter group
    //! Name of its parameter group.
    std::string_view group_name;
    bool group_masked = true;    //!< its group applies a mask policy (false: trained densely)
    std::uint64_t size = 0;      //!< elements of the logical tensor
    std::uint64_t offset = 0;    //!< first element of the registered view in it
    std::uint64_t elements = 0;  //!< elements of the registered view
};

} // namespace childtune
