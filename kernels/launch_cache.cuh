// launch_cache.cuh - host-side facts the launchers need on every call, read
// from the driver once per device (or per kernel and device) instead of per
// call: a CP step's call is short (0.1 ms forward), and what the host spends
// before its kernel starts is time the GPU waits when the call runs alone.
//
// Thread-safe without locks: the CP executor calls from several threads on
// one device.  Each cache slot is an atomic int written with the value the
// driver gave; two threads filling the same slot write the same value (and a
// cudaFuncSetAttribute twice with the same size is harmless).  Devices past
// LC_MAX_DEVICES are not cached (read every call, as before).
//
// What is cached stays valid as long as the process's CUDA context does: a
// cudaDeviceReset drops the kernels' attributes, so a launch that fails after
// a cached attribute sets it again and retries once (launch_fwd_ws).
#pragma once

#include <atomic>
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdint.h>

namespace fa4cp {

constexpr int LC_MAX_DEVICES = 64;

// The current device and its multiprocessor count (read once per device).
inline cudaError_t current_device_sms(int *dev, int *sms) {
    static std::atomic<int> cache[LC_MAX_DEVICES]; // 0: not read yet (static: zero-initialised)
    cudaError_t e = cudaGetDevice(dev);
    if (e != cudaSuccess)
        return e;
    const bool slot = *dev >= 0 && *dev < LC_MAX_DEVICES;
    if (slot) {
        const int v = cache[*dev].load(std::memory_order_relaxed);
        if (v > 0) {
            *sms = v;
            return cudaSuccess;
        }
    }
    if ((e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, *dev)) != cudaSuccess)
        return e;
    if (slot && *sms > 0)
        cache[*dev].store(*sms, std::memory_order_relaxed);
    return cudaSuccess;
}

// The dynamic shared memory a kernel was last allowed on each device: one
// table per kernel (the caller's `static FuncSmemCache`), so that
// cudaFuncSetAttribute runs once per (kernel, device, size).
struct FuncSmemCache {
    std::atomic<int> smem[LC_MAX_DEVICES]; // 0: not set by us
};

// Allow `kern` `smem` bytes of dynamic shared memory on device `dev`, unless
// the cache says it already is.  *cached: whether the call was skipped.
inline cudaError_t func_smem_once(FuncSmemCache &c, const void *kern, int smem, int dev, bool *cached) {
    const bool slot = dev >= 0 && dev < LC_MAX_DEVICES;
    *cached = slot && c.smem[dev].load(std::memory_order_acquire) == smem;
    if (*cached)
        return cudaSuccess;
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess && slot)
        c.smem[dev].store(smem, std::memory_order_release);
    return e;
}

// Forget the cached size of `kern` on `dev` (a launch failed: set it again).
inline void func_smem_forget(FuncSmemCache &c, int dev) {
    if (dev >= 0 && dev < LC_MAX_DEVICES)
        c.smem[dev].store(0, std::memory_order_relaxed);
}

// A 32-bit zero written to device memory in stream order by the GPU's front
// end (cuStreamWriteValue32: no kernel, unlike a cudaMemsetAsync of 4 bytes),
// where the driver offers it; else (or where it fails: the device or the
// stream does not support memory operations) by cudaMemsetAsync, and that
// device keeps the memset from then on.
inline cudaError_t zero_u32_async(int *ptr, cudaStream_t s, int dev, bool force_memset) {
    static std::atomic<int> state[LC_MAX_DEVICES]; // 0 untried, 1 write-value works, -1 memset
    static std::atomic<PFN_cuStreamWriteValue32_v11070> fn{nullptr};
    static std::atomic<int> fn_state{0}; // 0 not looked up, 1 found, -1 not found
    const bool slot = dev >= 0 && dev < LC_MAX_DEVICES;
    const int st = slot ? state[dev].load(std::memory_order_relaxed) : -1;
    if (!force_memset && st >= 0) {
        if (fn_state.load(std::memory_order_acquire) == 0) {
            void *p = nullptr;
            cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
            const bool ok = cudaGetDriverEntryPointByVersion("cuStreamWriteValue32", &p, 12000, cudaEnableDefault,
                                                             &q) == cudaSuccess &&
                            q == cudaDriverEntryPointSuccess && p;
            if (ok)
                fn.store(reinterpret_cast<PFN_cuStreamWriteValue32_v11070>(p), std::memory_order_relaxed);
            fn_state.store(ok ? 1 : -1, std::memory_order_release);
        }
        PFN_cuStreamWriteValue32_v11070 f = fn.load(std::memory_order_relaxed);
        if (fn_state.load(std::memory_order_acquire) == 1 && f) {
            if (f((CUstream)s, (CUdeviceptr)(uintptr_t)ptr, 0u, CU_STREAM_WRITE_VALUE_DEFAULT) == CUDA_SUCCESS) {
                if (st == 0)
                    state[dev].store(1, std::memory_order_relaxed);
                return cudaSuccess;
            }
            if (st == 0)
                state[dev].store(-1, std::memory_order_relaxed);
        }
    }
    return cudaMemsetAsync(ptr, 0, sizeof(int), s);
}

} // namespace fa4cp
