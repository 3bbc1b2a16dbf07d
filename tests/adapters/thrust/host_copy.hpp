#pragma once
//! Test support for the Thrust adapter's tests: host copies of device memory, and
//! bit-for-bit comparison (memcmp: -0.0 against +0.0 and NaN payloads count).

#include <thrust/copy.h>
#include <thrust/device_vector.h>

#include <cstring>
#include <vector>

namespace childtune_thrust_test {

template <class T>
std::vector<T> to_host(const ::thrust::device_vector<T>& d) {
    std::vector<T> out(d.size());
    ::thrust::copy(d.begin(), d.end(), out.begin());
    return out;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
bool same_bits(const std::vector<T>& a, const ::thrust::device_vector<T>& b) {
    return same_bits(a, to_host(b));
}

} // namespace childtune_thrust_test
