#pragma once
//! \file
//! What the adapter needs of a Thrust system's memory: a compile-time check that
//! an execution policy belongs to this translation unit's device system, a
//! run-time check that a pointer addresses memory that system can use, copies
//! between the host and the system on the policy's stream, and scratch buffers.
//!
//! On the CPP, OMP and TBB systems the "device" is the host, so every pointer is
//! usable and copies are plain copies. On CUDA a host pointer handed over as
//! device memory would fault inside a kernel (or read the wrong memory), so it is
//! caught before anything runs with cudaPointerGetAttributes.

#include <childtune/error.hpp>
#include <childtune/thrust/system.hpp>

#include <thrust/copy.h>
#include <thrust/execution_policy.h>
#include <thrust/memory.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#include <cuda_runtime_api.h>
#endif

namespace childtune::thrust {
inline namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE {

//! True for execution policies of this translation unit's device system:
//! `thrust::device`, `thrust::cuda::par.on(stream)` in a CUDA build,
//! `thrust::omp::par` in an OpenMP one. `thrust::host` in a CUDA build is not.
template <class Policy>
inline constexpr bool is_device_policy =
    std::is_base_of_v<::thrust::system::__THRUST_DEVICE_SYSTEM_NAMESPACE::execution_policy<Policy>, Policy>;

//! Whether the adapter checks, before a call writes anything, that every pointer
//! addresses memory of the device system. The check is one driver query per
//! pointer on CUDA (nothing on the CPU systems); `off` is for hot loops whose
//! pointers were checked once.
enum class memory_check : bool { off = false, on = true };

namespace detail {

template <class Policy>
constexpr void require_device_policy() {
    static_assert(is_device_policy<Policy>,
                  "childtune::thrust: the execution policy belongs to another Thrust system than this translation "
                  "unit's device system (THRUST_DEVICE_SYSTEM); pass thrust::device or a policy of that system");
}

//! Throws `<context>: <what> is not memory of the device system (...)` unless p
//! (not null) addresses device or managed memory on CUDA; any pointer passes on
//! the CPU systems.
template <class Context>
void require_system_memory([[maybe_unused]] const void* p, [[maybe_unused]] const Context& context,
                           [[maybe_unused]] const char* what) {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    cudaPointerAttributes attributes{};
    const cudaError_t status = cudaPointerGetAttributes(&attributes, p);
    if (status != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky error of the query itself
        childtune::detail::fail(context() + ": " + what + " could not be queried (" + cudaGetErrorString(status) + ")");
    }
    if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged)
        childtune::detail::fail(context() + ": " + what +
                                (attributes.type == cudaMemoryTypeHost ? " is pinned host memory" : " is host memory") +
                                ", not CUDA device memory");
#endif
}

//! Whether p addresses memory the device system can use (always on the CPU
//! systems; device or managed memory on CUDA).
inline bool is_system_memory([[maybe_unused]] const void* p) {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
#else
    return true;
#endif
}

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
template <class Policy>
cudaStream_t stream_of(const Policy& policy) {
    Policy copy = policy; // thrust::cuda_cub::stream takes a non-const reference
    return ::thrust::cuda_cub::stream(copy);
}

inline void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess) childtune::detail::fail(std::string("childtune::thrust: ") + what + ": " + cudaGetErrorString(status));
}
#endif

//! Copies n elements from the system's memory to the host, ordered after the
//! work already queued on the policy's stream; returns when they have arrived.
template <class T, class Policy>
void copy_to_host(const Policy& policy, const T* from, std::size_t n, T* to) {
    if (n == 0) return;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    const cudaStream_t stream = stream_of(policy);
    check_cuda(cudaMemcpyAsync(to, from, n * sizeof(T), cudaMemcpyDeviceToHost, stream), "copy to the host");
    check_cuda(cudaStreamSynchronize(stream), "copy to the host");
#else
    ::thrust::copy(policy, from, from + n, to);
#endif
}

//! Copies n elements from the host to the system's memory, ordered on the
//! policy's stream. The host buffer may be reused when this returns (CUDA stages
//! pageable memory before cudaMemcpyAsync returns).
template <class T, class Policy>
void copy_to_system(const Policy& policy, const T* from, std::size_t n, T* to) {
    if (n == 0) return;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    const cudaStream_t stream = stream_of(policy);
    check_cuda(cudaMemcpyAsync(to, from, n * sizeof(T), cudaMemcpyHostToDevice, stream), "copy to the device");
#else
    ::thrust::copy(policy, from, from + n, to);
#endif
}

//! n elements of uninitialised scratch memory of the policy's system, returned
//! when the object goes out of scope (thrust::get_temporary_buffer, so a caching
//! allocator installed in the policy serves it).
template <class T, class Policy>
class scratch {
public:
    //! Allocates through `policy`, not through the member copy of it: GCC at -O1
    //! takes the member (an empty tag type, nothing to initialise) of an object
    //! still under construction for a read of uninitialised memory
    //! (-Wmaybe-uninitialized), which a user's -Werror build would stop on.
    scratch(const Policy& policy, std::size_t n, const char* what)
        : policy_(policy), buffer_(::thrust::get_temporary_buffer<T>(policy, static_cast<std::ptrdiff_t>(n ? n : 1))) {
        if (buffer_.second < static_cast<std::ptrdiff_t>(n ? n : 1)) {
            release();
            childtune::detail::fail(std::string("childtune::thrust: cannot allocate ") + std::to_string(n * sizeof(T)) +
                                    " bytes for " + what);
        }
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
    ~scratch() { release(); }

    T* get() const { return ::thrust::raw_pointer_cast(buffer_.first); }

private:
    void release() {
        if (buffer_.second > 0) ::thrust::return_temporary_buffer(policy_, buffer_.first, buffer_.second);
        buffer_.second = 0;
    }

    Policy policy_;
    decltype(::thrust::get_temporary_buffer<T>(std::declval<Policy&>(), std::ptrdiff_t{})) buffer_;
};

} // namespace detail
} // namespace CHILDTUNE_THRUST_SYSTEM_NAMESPACE
} // namespace childtune::thrust
