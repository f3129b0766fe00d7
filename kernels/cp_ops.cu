// cp_ops.cu - the elementwise kernels of the CP executor on the GPU: the
// fp32 (fp64) online LSE merge and output correction, row-map gathers (the
// THD half-tensor reads/writes, a2a chunk and head-group reorders), the
// dK/dV/dQ accumulation, conversions to storage type, and the reductions of
// the local device transport.  Everything is queued on the caller's stream.
#include "cp_ops.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

namespace {

constexpr int kBF16 = 0, kFP16 = 1, kFP32 = 2, kFP64 = 3;

__device__ __forceinline__ double load_as(int dt, const void *p, size_t i) {
    switch (dt) {
    case kBF16: return (double)__bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case kFP16: return (double)__half2float(((const __half *)p)[i]);
    case kFP32: return (double)((const float *)p)[i];
    default: return ((const double *)p)[i];
    }
}

__device__ __forceinline__ float load_f(int dt, const void *p, size_t i) {
    switch (dt) {
    case kBF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case kFP16: return __half2float(((const __half *)p)[i]);
    case kFP32: return ((const float *)p)[i];
    default: return (float)((const double *)p)[i];
    }
}

__device__ __forceinline__ void store_as(int dt, void *p, size_t i, double v) {
    switch (dt) {
    case kBF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); break;
    case kFP16: ((__half *)p)[i] = __float2half_rn((float)v); break;
    case kFP32: ((float *)p)[i] = (float)v; break;
    default: ((double *)p)[i] = v; break;
    }
}

unsigned grid_for(int64_t work, int block) {
    int64_t g = (work + block - 1) / block;
    if (g > 65535LL * 32) // grid-stride loops cover the rest
        g = 65535LL * 32;
    return (unsigned)(g < 1 ? 1 : g);
}

__global__ void fill_neg_inf_k(int dt, void *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        if (dt == kFP64)
            ((double *)dst)[i] = -INFINITY;
        else
            ((float *)dst)[i] = -INFINITY;
    }
}

// W: the word type that divides the unit
template <typename W>
__global__ void gather_k(W *dst, const W *src, const fa4cp_kpair *map, int64_t n, int64_t words,
                         int nouter, int64_t dst_stride, int64_t src_stride) {
    const int64_t total = (int64_t)nouter * n * words;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = i % words, t = i / words, k = t % n, o = t / n;
        fa4cp_kpair p = map[k];
        dst[(o * dst_stride + p.dst) * words + w] = src[(o * src_stride + p.src) * words + w];
    }
}

template <typename A>
__global__ void add_k(A *acc, int sdt, const void *src, const fa4cp_kpair *map, int64_t n,
                      int64_t row) {
    const int64_t total = n * row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t e = i % row, k = i / row;
        fa4cp_kpair p = map[k];
        A v = sizeof(A) == 8 ? (A)load_as(sdt, src, (size_t)(p.src * row + e))
                             : (A)load_f(sdt, src, (size_t)(p.src * row + e));
        acc[p.dst * row + e] += v;
    }
}

__global__ void convert_k(int ddt, void *dst, int sdt, const void *src, const fa4cp_kpair *map,
                          int64_t n, int64_t row) {
    const int64_t total = n * row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t e = i % row, k = i / row;
        fa4cp_kpair p = map[k];
        store_as(ddt, dst, (size_t)(p.dst * row + e), load_as(sdt, src, (size_t)(p.src * row + e)));
    }
}

// One warp per (pair, head): every lane reads the two LSEs and computes the
// weights, the row is rescaled in place, then lane 0 writes the new LSE.
template <typename T>
__global__ void merge_k(T *acc, T *acc_lse, int64_t acc_rows, int pdt, const void *part,
                        const T *part_lse, int64_t part_rows, const fa4cp_kpair *map, int64_t n,
                        int heads, int head_dim) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t wi = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); wi < n * heads;
         wi += warps) {
        const int64_t k = wi / heads;
        const int h = (int)(wi % heads);
        const fa4cp_kpair p = map[k];
        T *la = acc_lse + (int64_t)h * acc_rows + p.dst;
        const T lb = part_lse[(int64_t)h * part_rows + p.src];
        if (lb == -INFINITY || isnan(lb))
            continue; // the partial saw no key
        const T lo0 = *la;
        T wa, wb, m;
        if (lo0 == -INFINITY) {
            wa = 0, wb = 1, m = lb;
        } else {
            T hi = lo0 > lb ? lo0 : lb, lo = lo0 > lb ? lb : lo0;
            m = hi + log1p(exp(lo - hi));
            wa = exp(lo0 - m), wb = exp(lb - m);
        }
        T *a = acc + (p.dst * heads + h) * (int64_t)head_dim;
        const size_t pi = (size_t)((p.src * heads + h) * (int64_t)head_dim);
        for (int x = lane; x < head_dim; x += 32) {
            T v = sizeof(T) == 8 ? (T)load_as(pdt, part, pi + x) : (T)load_f(pdt, part, pi + x);
            a[x] = wa == 0 ? wb * v : a[x] * wa + v * wb;
        }
        __syncwarp();
        if (lane == 0)
            *la = m;
    }
}

struct srcs16 {
    const void *p[16];
};

__global__ void reduce_k(int dt, int op, void *dst, srcs16 s, int nsrc, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        double acc = load_as(dt, s.p[0], i);
        for (int k = 1; k < nsrc; k++) {
            double v = load_as(dt, s.p[k], i);
            if (op == 0)
                acc = dt == kFP64 ? acc + v : (double)((float)acc + (float)v);
            else
                acc = (v > acc || isnan(v)) ? v : acc;
        }
        store_as(dt, dst, i, acc);
    }
}

int last_error() { return (int)cudaGetLastError(); }

} // namespace

extern "C" int fa4cp_kcp_fill_neg_inf(int dtype, void *dst, size_t n, void *stream) {
    if (n == 0)
        return 0;
    fill_neg_inf_k<<<grid_for((int64_t)n, 256), 256, 0, (cudaStream_t)stream>>>(dtype, dst, n);
    return last_error();
}

extern "C" int fa4cp_kcp_gather(void *dst, const void *src, const fa4cp_kpair *map, int64_t n,
                                size_t unit_bytes, int nouter, int64_t dst_stride,
                                int64_t src_stride, void *stream) {
    if (n <= 0 || nouter <= 0 || unit_bytes == 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    uintptr_t align = (uintptr_t)dst | (uintptr_t)src | (uintptr_t)unit_bytes;
    int64_t total = (int64_t)nouter * n * (int64_t)unit_bytes;
    if ((align & 15) == 0) {
        int64_t w = (int64_t)unit_bytes / 16;
        gather_k<<<grid_for(total / 16, 256), 256, 0, s>>>((uint4 *)dst, (const uint4 *)src, map,
                                                           n, w, nouter, dst_stride, src_stride);
    } else if ((align & 3) == 0) {
        int64_t w = (int64_t)unit_bytes / 4;
        gather_k<<<grid_for(total / 4, 256), 256, 0, s>>>((uint32_t *)dst, (const uint32_t *)src,
                                                          map, n, w, nouter, dst_stride, src_stride);
    } else if ((align & 1) == 0) {
        int64_t w = (int64_t)unit_bytes / 2;
        gather_k<<<grid_for(total / 2, 256), 256, 0, s>>>((uint16_t *)dst, (const uint16_t *)src,
                                                          map, n, w, nouter, dst_stride, src_stride);
    } else {
        gather_k<<<grid_for(total, 256), 256, 0, s>>>((uint8_t *)dst, (const uint8_t *)src, map, n,
                                                      (int64_t)unit_bytes, nouter, dst_stride,
                                                      src_stride);
    }
    return last_error();
}

extern "C" int fa4cp_kcp_add(int acc_dtype, void *acc, int src_dtype, const void *src,
                             const fa4cp_kpair *map, int64_t n, size_t row_elems, void *stream) {
    if (n <= 0 || row_elems == 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    int64_t total = n * (int64_t)row_elems;
    if (acc_dtype == kFP64)
        add_k<double><<<grid_for(total, 256), 256, 0, s>>>((double *)acc, src_dtype, src, map, n,
                                                           (int64_t)row_elems);
    else if (acc_dtype == kFP32)
        add_k<float><<<grid_for(total, 256), 256, 0, s>>>((float *)acc, src_dtype, src, map, n,
                                                          (int64_t)row_elems);
    else
        return (int)cudaErrorInvalidValue;
    return last_error();
}

extern "C" int fa4cp_kcp_convert(int dst_dtype, void *dst, int src_dtype, const void *src,
                                 const fa4cp_kpair *map, int64_t n, size_t row_elems,
                                 void *stream) {
    if (n <= 0 || row_elems == 0)
        return 0;
    int64_t total = n * (int64_t)row_elems;
    convert_k<<<grid_for(total, 256), 256, 0, (cudaStream_t)stream>>>(
        dst_dtype, dst, src_dtype, src, map, n, (int64_t)row_elems);
    return last_error();
}

extern "C" int fa4cp_kcp_merge(int acc_dtype, void *acc, void *acc_lse, int64_t acc_rows,
                               int part_dtype, const void *part, const void *part_lse,
                               int64_t part_rows, const fa4cp_kpair *map, int64_t n, int heads,
                               int head_dim, void *stream) {
    if (n <= 0 || heads <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    int64_t warps = n * heads;
    unsigned g = grid_for(warps * 32, 256);
    if (acc_dtype == kFP64)
        merge_k<double><<<g, 256, 0, s>>>((double *)acc, (double *)acc_lse, acc_rows, part_dtype,
                                          part, (const double *)part_lse, part_rows, map, n, heads,
                                          head_dim);
    else if (acc_dtype == kFP32)
        merge_k<float><<<g, 256, 0, s>>>((float *)acc, (float *)acc_lse, acc_rows, part_dtype, part,
                                         (const float *)part_lse, part_rows, map, n, heads,
                                         head_dim);
    else
        return (int)cudaErrorInvalidValue;
    return last_error();
}

extern "C" int fa4cp_kcp_reduce(int dtype, int op, void *dst, const void *const *srcs, int nsrc,
                                size_t count, void *stream) {
    if (count == 0)
        return 0;
    if (nsrc < 1 || nsrc > 16)
        return (int)cudaErrorInvalidValue;
    srcs16 s;
    for (int i = 0; i < 16; i++)
        s.p[i] = i < nsrc ? srcs[i] : nullptr;
    reduce_k<<<grid_for((int64_t)count, 256), 256, 0, (cudaStream_t)stream>>>(dtype, op, dst, s,
                                                                             nsrc, count);
    return last_error();
}
