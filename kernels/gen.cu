// gen.cu - the counter-based input generator on the GPU (gen_math.h: the
// same bits as lib/run/gen.c), and the per-row D = rowsum(dout * out) that
// the key-row check needs.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "gen_math.h"
#include "run_kernels.h"

namespace {

// the value of a generated element in storage bits (dtype 0 bf16, 1 fp16)
__device__ __forceinline__ uint16_t to16(int dtype, double v)
{
    float f = __double2float_rn(v);
    if (dtype == 0)
        return gm_float_to_bf16(f);
    return __half_as_ushort(__float2half_rn(f));
}

__device__ __forceinline__ double from16(int dtype, uint16_t b)
{
    if (dtype == 0)
        return (double)__uint_as_float((uint32_t)b << 16);
    return (double)__half2float(__ushort_as_half(b));
}

__device__ __forceinline__ double rounded(int dtype, double v)
{
    switch (dtype) {
    case 0:
    case 1: return from16(dtype, to16(dtype, v));
    case 2: return (double)__double2float_rn(v);
    default: return v;
    }
}

__device__ __forceinline__ double load(int dtype, const void *p, size_t i)
{
    switch (dtype) {
    case 0:
    case 1: return from16(dtype, ((const uint16_t *)p)[i]);
    case 2: return (double)((const float *)p)[i];
    default: return ((const double *)p)[i];
    }
}

__global__ void fill_kernel(int dtype, void *dst, uint64_t seed, int tensor, const int64_t *map, int64_t rows,
                            int heads, int d)
{
    int pairs = (d + 1) / 2;
    int64_t total = rows * heads * pairs;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int p = (int)(i % pairs);
        int64_t rh = i / pairs;
        int h = (int)(rh % heads);
        int64_t row = rh / heads;
        int64_t tok = map ? map[row] : row;
        double e = 0, o = 0;
        if (tok >= 0)
            gm_pair(gm_row_key(seed, tensor, tok, h), p, &e, &o);
        size_t at = (size_t)rh * d + 2 * (size_t)p;
        int two = 2 * p + 1 < d;
        switch (dtype) {
        case 0:
        case 1: {
            uint16_t *q = (uint16_t *)dst;
            uint16_t be = tok >= 0 ? to16(dtype, e) : 0, bo = tok >= 0 ? to16(dtype, o) : 0;
            if (two && (d % 2) == 0)
                *(uint32_t *)(q + at) = (uint32_t)be | ((uint32_t)bo << 16);
            else {
                q[at] = be;
                if (two)
                    q[at + 1] = bo;
            }
            break;
        }
        case 2: {
            float *q = (float *)dst;
            q[at] = __double2float_rn(e);
            if (two)
                q[at + 1] = __double2float_rn(o);
            break;
        }
        default: {
            double *q = (double *)dst;
            q[at] = e;
            if (two)
                q[at + 1] = o;
        }
        }
    }
}

__global__ void points_kernel(const fa4cp_kgen_point *pts, int64_t n, double *out)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        fa4cp_kgen_point pt = pts[i];
        double e, o;
        gm_pair(gm_row_key(pt.seed, pt.tensor, pt.token, pt.head), pt.dim / 2, &e, &o);
        out[i] = rounded(pt.dtype, pt.dim % 2 ? o : e);
    }
}

// one warp per (row, head)
__global__ void rowdot_kernel(int dtype, const void *a, const void *b, const int64_t *map, int64_t rows, int heads,
                              int d, double *D)
{
    int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    int64_t nw = (int64_t)gridDim.x * blockDim.x / 32;
    for (; w < rows * heads; w += nw) {
        int64_t row = w / heads;
        int h = (int)(w % heads);
        double s = 0;
        if (map[row] >= 0)
            for (int x = lane; x < d; x += 32) {
                size_t at = ((size_t)row * heads + h) * d + x;
                s += load(dtype, a, at) * load(dtype, b, at);
            }
        for (int off = 16; off; off >>= 1)
            s += __shfl_down_sync(0xffffffffu, s, off);
        if (lane == 0)
            D[(size_t)h * rows + row] = s;
    }
}

int grid_for(int64_t items, int block)
{
    int64_t g = (items + block - 1) / block;
    if (g > 65536)
        g = 65536;
    return g < 1 ? 1 : (int)g;
}

} // namespace

extern "C" int fa4cp_kgen_fill(int dtype, void *dst, uint64_t seed, int tensor, const int64_t *dmap, int64_t rows,
                               int heads, int head_dim, void *stream)
{
    int64_t items = rows * heads * ((head_dim + 1) / 2);
    if (items <= 0)
        return 0;
    fill_kernel<<<grid_for(items, 256), 256, 0, (cudaStream_t)stream>>>(dtype, dst, seed, tensor, dmap, rows, heads,
                                                                        head_dim);
    return (int)cudaGetLastError();
}

extern "C" int fa4cp_kgen_points(const fa4cp_kgen_point *dpts, int64_t n, double *dout, void *stream)
{
    if (n <= 0)
        return 0;
    points_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)stream>>>(dpts, n, dout);
    return (int)cudaGetLastError();
}

extern "C" int fa4cp_kgen_rowdot(int dtype, const void *ddout, const void *dout_, const int64_t *dmap, int64_t rows,
                                 int heads, int head_dim, double *dD, void *stream)
{
    int64_t items = rows * heads * 32;
    if (items <= 0)
        return 0;
    rowdot_kernel<<<grid_for(items, 256), 256, 0, (cudaStream_t)stream>>>(dtype, ddout, dout_, dmap, rows, heads,
                                                                          head_dim, dD);
    return (int)cudaGetLastError();
}
