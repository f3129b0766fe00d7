// launch_cache.cuh - host-side facts the launchers need on every call, read
// from the driver once per device (or per kernel and device) instead of per
// call: a CP step's call is short (0.1 ms forward), and what the host spends
// before its kernel starts is time the GPU waits when the call runs alone.
// Also the launch itself with programmatic dependent launch (launch_pdl, at
// the end), for the same short calls.
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
#include <utility>

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

// One FuncSmemCache per kernel of a launcher that picks among several
// instantiations at run time (the backward's variants, bwd_ws_pick): slots
// keyed by the kernel's address, claimed by compare-and-swap.  A full table
// gives nullptr: the caller then sets the attribute every call.
struct FuncSmemTable {
    static constexpr int N = 32;
    std::atomic<const void *> key[N]; // nullptr: free (static: zero-initialised)
    FuncSmemCache c[N];
};
inline FuncSmemCache *func_smem_slot(FuncSmemTable &t, const void *kern) {
    for (int i = 0; i < FuncSmemTable::N; ++i) {
        const void *k = t.key[i].load(std::memory_order_acquire);
        if (k == nullptr) {
            const void *expect = nullptr;
            if (t.key[i].compare_exchange_strong(expect, kern, std::memory_order_acq_rel) || expect == kern)
                return &t.c[i];
            continue; // another kernel took the slot first
        }
        if (k == kern)
            return &t.c[i];
    }
    return nullptr;
}

// PDL (programmatic dependent launch; FA4CP_CUDA_TUNING 2^41: off): the
// attention calls' kernels are launched with programmatic stream
// serialisation, so that the driver launches each behind the kernel before
// it in the stream as that one's CTAs exit, instead of after its completion
// has been seen: the kernel's CTAs are on the SMs, waiting in
// sm90::grid_dep_wait (their first statement) until that grid's writes are
// visible.  No early trigger (griddepcontrol.launch_dependents): the next
// kernel's CTAs do not take SMs while this one still has CTAs to start.  A
// CP step's backward is 3 kernels of 0.3 ms together, its forward one of
// 0.11 ms, and the gaps between them were what the steps' sum lost against
// one call (bench_cp, ratio_iso).
inline bool pdl_on(long long tuning) { return !(tuning & 2199023255552LL); }

template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl,
                              Args &&...args) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

} // namespace fa4cp
