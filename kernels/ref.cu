// ref.cu - the check's reference on the GPU: deliberately simple.
//
// One block computes one query row (out, lse, dq of one query head) or one
// key row (dk, dv of one kv head) in double precision, streaming over the
// other side's rows in small tiles that it regenerates itself with the
// generator (gen_math.h) - or, for small batches, reads from the whole
// batch's inputs generated once beforehand by the same generator (the same
// values bit for bit: fa4cp_kref_case.src) - exactly as the float64 host reference
// (lib/run/gen.c: fa4cp_ref_query_rows / fa4cp_ref_key_rows) does: same
// masks, same formulas; only the summation order differs.  It shares no code
// with the attention kernels it checks (no tensor cores, no fp32 softmax, no
// tiles of the real kernels) and reads nothing of theirs but the outputs it
// compares, and, for key rows, the CP forward's lse and D = rowsum(dout*out)
// (as the host reference does).  q, k, dq, dk rows are head_dim wide; v,
// dout, out, dv rows head_dim_v (MLA: 192 and 128).  Query and key rows of
// one check run in one launch: blocks [0, nq) are query rows, the rest key
// rows.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "gen_math.h"
#include "run_kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPerThread = 4; // dims per thread: head_dim, head_dim_v <= 1024

enum { T_Q = 0, T_K = 1, T_V = 2, T_DOUT = 3 };

__device__ __forceinline__ double rounded(int dtype, double v)
{
    float f = __double2float_rn(v);
    switch (dtype) {
    case 0: return (double)__uint_as_float((uint32_t)gm_float_to_bf16(f) << 16);
    case 1: return (double)__half2float(__float2half_rn(f));
    case 2: return (double)f;
    default: return v;
    }
}

__device__ __forceinline__ double load(int dtype, const void *p, size_t i)
{
    switch (dtype) {
    case 0: return (double)__uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
    case 1: return (double)__half2float(__ushort_as_half(((const uint16_t *)p)[i]));
    case 2: return (double)((const float *)p)[i];
    default: return ((const double *)p)[i];
    }
}

// the elements of 16 bytes of a tensor of dtype, as doubles (8, 8, 4 or 2 of them)
__device__ __forceinline__ void unpack16(int dtype, uint4 v, double *o)
{
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
    switch (dtype) {
    case 0:
#pragma unroll
        for (int e = 0; e < 8; e++)
            o[e] = (double)__uint_as_float((u[e / 2] >> (16 * (e % 2))) << 16);
        break;
    case 1:
#pragma unroll
        for (int e = 0; e < 8; e++)
            o[e] = (double)__half2float(__ushort_as_half((unsigned short)(u[e / 2] >> (16 * (e % 2)))));
        break;
    case 2:
#pragma unroll
        for (int e = 0; e < 4; e++)
            o[e] = (double)__uint_as_float(u[e]);
        break;
    default:
        o[0] = __hiloint2double((int)u[1], (int)u[0]);
        o[1] = __hiloint2double((int)u[3], (int)u[2]);
    }
}

// Rows `nrows` of one tensor, `w` doubles each, into dst: row r is
// (tensor, token_of(r), head_of(r)) - read from the pre-generated batch
// (c.src[tensor]) or regenerated; the block's threads share the pairs.
template <typename RowFn>
__device__ void gen_rows(const fa4cp_kref_case &c, int tensor, int nrows, int w, double *dst, RowFn rowfn)
{
    const int pairs = (w + 1) / 2;
    const void *src = c.src[tensor];
    const int heads = tensor == T_K || tensor == T_V ? c.kv_heads : c.heads;
    const int per = 16 / (c.dtype <= 1 ? 2 : c.dtype == 2 ? 4 : 8); // elements in 16 bytes
    if (src && w % per == 0) {
        // the pre-generated batch in 16-byte loads (rows and the batch's
        // tensors start 16-byte aligned): one load per thread per tile of
        // 16 rows at d = 128, where element by element it was eight
        const int chunks = w / per;
        for (int it = threadIdx.x; it < nrows * chunks; it += blockDim.x) {
            int r = it / chunks, ch = it % chunks, head;
            int64_t token;
            rowfn(r, &token, &head);
            size_t at = ((size_t)token * heads + head) * w + (size_t)ch * per;
            const uint4 v = *(const uint4 *)((const unsigned char *)src + at * (16 / per));
            unpack16(c.dtype, v, dst + (size_t)r * w + (size_t)ch * per);
        }
        return;
    }
    for (int it = threadIdx.x; it < nrows * pairs; it += blockDim.x) {
        int r = it / pairs, p = it % pairs, head;
        int64_t token;
        rowfn(r, &token, &head);
        double e, o = 0;
        if (src) {
            size_t at = ((size_t)token * heads + head) * w + 2 * (size_t)p;
            e = load(c.dtype, src, at);
            if (2 * p + 1 < w)
                o = load(c.dtype, src, at + 1);
        } else {
            gm_pair(gm_row_key(c.seed, tensor, token, head), p, &e, &o);
            e = rounded(c.dtype, e);
            o = rounded(c.dtype, o);
        }
        dst[(size_t)r * w + 2 * p] = e;
        if (2 * p + 1 < w)
            dst[(size_t)r * w + 2 * p + 1] = o;
    }
}

// the block's sum of v, returned to every thread (red: 32 doubles of shared memory)
__device__ double block_sum(double v, double *red)
{
    for (int off = 16; off; off >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, off);
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = v;
    __syncthreads();
    double s = 0;
    for (int w = 0; w < (int)(blockDim.x / 32); w++)
        s += red[w];
    return s;
}

// dot products a[item] . b (or a . b[item]) by warps: out[item]
__device__ void dots(int n, int d, const double *x, size_t xstride, const double *y, size_t ystride, double *out)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    for (int it = warp; it < n; it += nw) {
        const double *a = x + (size_t)it * xstride, *b = y + (size_t)it * ystride;
        double s = 0;
        for (int k = lane; k < d; k += 32)
            s += a[k] * b[k];
        for (int off = 16; off; off >>= 1)
            s += __shfl_down_sync(0xffffffffu, s, off);
        if (lane == 0)
            out[it] = s;
    }
}

// visible key range [lo, hi] of query i (sequence of n tokens), as the host
__device__ void key_range(const fa4cp_kref_case &c, int64_t n, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t right = c.causal ? 0 : c.window_right;
    *hi = right < 0 ? n - 1 : i + right;
    *lo = c.window_left < 0 ? 0 : i - c.window_left;
    if (*hi > n - 1)
        *hi = n - 1;
    if (*lo < 0)
        *lo = 0;
}

// query range [lo, hi] that sees key j
__device__ void query_range(const fa4cp_kref_case &c, int64_t n, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t right = c.causal ? 0 : c.window_right;
    *lo = right < 0 ? 0 : j - right;
    *hi = c.window_left < 0 ? n - 1 : j + c.window_left;
    if (*lo < 0)
        *lo = 0;
    if (*hi > n - 1)
        *hi = n - 1;
}

__device__ __forceinline__ double sq_err(double got, double ref)
{
    double e = got - ref;
    return isfinite(e) ? e * e : INFINITY;
}

// shared memory (doubles) of a query and of a key row, with tk rows per tile
__host__ __device__ size_t query_smem(int d, int dv, int tk)
{
    return (size_t)d + dv + (size_t)tk * (d + dv) + 3 * (size_t)tk + 32;
}
__host__ __device__ size_t key_smem(int d, int dv, int tk)
{
    return (size_t)d + dv + (size_t)tk * (d + dv) + 6 * (size_t)tk + 32;
}

// One query row (blockIdx b of the rows): out [dv], lse, dq [d].
__device__ void query_row(const fa4cp_kref_case &c, const fa4cp_kref_row &row, int b, int tk,
                          const fa4cp_kref_io &io, double *sm)
{
    const int d = c.head_dim, dv = c.head_dim_v, group = c.heads / c.kv_heads;
    const int hk = row.head / group;
    double *q = sm, *dout = q + d, *K = dout + dv, *V = K + (size_t)tk * d;
    double *S = V + (size_t)tk * dv, *DP = S + tk, *P = DP + tk, *red = P + tk;
    const double scale = c.scale;
    const int64_t tok = row.base + row.pos;

    gen_rows(c, T_Q, 1, d, q, [&](int, int64_t *t, int *h) { *t = tok, *h = row.head; });
    if (c.backward)
        gen_rows(c, T_DOUT, 1, dv, dout, [&](int, int64_t *t, int *h) { *t = tok, *h = row.head; });
    else
        for (int x = threadIdx.x; x < dv; x += blockDim.x)
            dout[x] = 0;
    // acc_o over dv (out); acc_a, acc_b over d (dq = scale (A - D B) / l)
    double acc_o[kMaxPerThread], acc_a[kMaxPerThread], acc_b[kMaxPerThread];
    for (int k = 0; k < kMaxPerThread; k++)
        acc_o[k] = acc_a[k] = acc_b[k] = 0;
    double m = -INFINITY, l = 0;
    int64_t lo, hi;
    key_range(c, row.len, row.pos, &lo, &hi);
    for (int64_t t0 = lo; t0 <= hi; t0 += tk) {
        const int nk = (int)(hi - t0 + 1 < tk ? hi - t0 + 1 : tk);
        __syncthreads(); // the previous tile is consumed (and q, dout are written)
        gen_rows(c, T_K, nk, d, K, [&](int j, int64_t *t, int *h) { *t = row.base + t0 + j, *h = hk; });
        gen_rows(c, T_V, nk, dv, V, [&](int j, int64_t *t, int *h) { *t = row.base + t0 + j, *h = hk; });
        __syncthreads();
        dots(nk, d, K, d, q, 0, S);
        dots(nk, dv, V, dv, dout, 0, DP);
        __syncthreads();
        double mt = -INFINITY;
        for (int j = 0; j < nk; j++)
            mt = fmax(mt, S[j] * scale);
        double mn = fmax(m, mt);
        double corr = exp(m - mn);
        __syncthreads();
        for (int j = threadIdx.x; j < nk; j += blockDim.x)
            P[j] = exp(S[j] * scale - mn);
        __syncthreads();
        l *= corr;
        for (int j = 0; j < nk; j++)
            l += P[j];
        for (int k = 0; k < kMaxPerThread; k++) {
            int x = threadIdx.x + k * blockDim.x;
            if (x < dv) {
                double o = acc_o[k] * corr;
                for (int j = 0; j < nk; j++)
                    o += P[j] * V[(size_t)j * dv + x];
                acc_o[k] = o;
            }
            if (x < d) {
                double a = acc_a[k] * corr, bb = acc_b[k] * corr;
                for (int j = 0; j < nk; j++) {
                    double pj = P[j], kx = K[(size_t)j * d + x];
                    a += pj * DP[j] * kx;
                    bb += pj * kx;
                }
                acc_a[k] = a;
                acc_b[k] = bb;
            }
        }
        m = mn;
    }
    __syncthreads(); // q, dout written (no key at all: the loop never synced)
    double lse = l > 0 ? m + log(l) : -INFINITY;
    double dsum = 0;
    for (int k = 0; k < kMaxPerThread; k++) {
        int x = threadIdx.x + k * blockDim.x;
        if (x >= dv)
            break;
        if (l > 0)
            acc_o[k] /= l;
        dsum += dout[x] * acc_o[k];
    }
    double D = block_sum(dsum, red);
    double e0 = 0, r0 = 0, e1 = 0, r1 = 0;
    for (int k = 0; k < kMaxPerThread; k++) {
        int x = threadIdx.x + k * blockDim.x;
        if (x < dv) {
            if (io.ref_out)
                io.ref_out[(size_t)b * dv + x] = acc_o[k];
            if (row.local >= 0 && io.err && io.out) {
                size_t at = ((size_t)row.local * c.heads + row.head) * dv + x;
                e0 += sq_err(load(c.dtype, io.out, at), acc_o[k]);
                r0 += acc_o[k] * acc_o[k];
            }
        }
        if (x < d && c.backward) {
            double dq = l > 0 ? scale * (acc_a[k] / l - D * acc_b[k] / l) : 0;
            if (io.ref_dq)
                io.ref_dq[(size_t)b * d + x] = dq;
            if (row.local >= 0 && io.err && io.dq) {
                size_t at = ((size_t)row.local * c.heads + row.head) * d + x;
                e1 += sq_err(load(c.dtype, io.dq, at), dq);
                r1 += dq * dq;
            }
        }
    }
    e0 = block_sum(e0, red);
    r0 = block_sum(r0, red);
    e1 = block_sum(e1, red);
    r1 = block_sum(r1, red);
    if (threadIdx.x == 0) {
        if (io.ref_lse)
            io.ref_lse[b] = lse;
        if (io.err) {
            double *o = io.err + (size_t)b * FA4CP_KREF_NERR;
            o[FA4CP_KREF_D0] = e0;
            o[FA4CP_KREF_R0] = r0;
            o[FA4CP_KREF_D1] = e1;
            o[FA4CP_KREF_R1] = r1;
            double le = 0;
            if (row.local >= 0 && io.lse) {
                size_t at = (size_t)row.head * c.rows + row.local;
                double got = c.lse_fp64 ? ((const double *)io.lse)[at] : (double)((const float *)io.lse)[at];
                if (isinf(lse) && isinf(got) && lse < 0 && got < 0)
                    le = 0;
                else
                    le = fabs(got - lse) / fmax(1.0, fabs(lse));
                if (isnan(le))
                    le = INFINITY;
            }
            o[FA4CP_KREF_LSE] = le;
        }
    }
}

// One key row (k-th key row, at err/ref row b): dk [d], dv [dv].
__device__ void key_row(const fa4cp_kref_case &c, const fa4cp_kref_row &row, int kidx, int b, int tk,
                        const fa4cp_kref_io &io, double *sm)
{
    const int d = c.head_dim, dv = c.head_dim_v, group = c.heads / c.kv_heads;
    const int hk = row.head;
    double *k = sm, *v = k + d, *Q = v + dv, *O = Q + (size_t)tk * d;
    double *S = O + (size_t)tk * dv, *DP = S + tk, *P = DP + tk, *DS = P + tk, *L = DS + tk, *DD = L + tk;
    double *red = DD + tk;
    const double scale = c.scale;
    const int64_t tok = row.base + row.pos;

    gen_rows(c, T_K, 1, d, k, [&](int, int64_t *t, int *h) { *t = tok, *h = hk; });
    gen_rows(c, T_V, 1, dv, v, [&](int, int64_t *t, int *h) { *t = tok, *h = hk; });
    double acc_k[kMaxPerThread], acc_v[kMaxPerThread];
    for (int x = 0; x < kMaxPerThread; x++)
        acc_k[x] = acc_v[x] = 0;
    int64_t lo, hi;
    query_range(c, row.len, row.pos, &lo, &hi);
    // items: (query i, group head g), i-major
    const int64_t nitems = hi >= lo ? (hi - lo + 1) * group : 0;
    const int64_t chunk = row.plen / (2 * c.cp);
    for (int64_t t0 = 0; t0 < nitems; t0 += tk) {
        const int n = (int)(nitems - t0 < tk ? nitems - t0 : tk);
        __syncthreads();
        auto item_row = [&](int it, int64_t *t, int *h) {
            int64_t item = t0 + it;
            *t = row.base + lo + item / group;
            *h = hk * group + (int)(item % group);
        };
        gen_rows(c, T_Q, n, d, Q, item_row);
        gen_rows(c, T_DOUT, n, dv, O, item_row);
        for (int it = threadIdx.x; it < n; it += blockDim.x) {
            int64_t item = t0 + it, i = lo + item / group;
            int h = hk * group + (int)(item % group);
            // the gathered [cp, heads, rows] index of query i (lib/thd: global_to_local)
            int64_t cidx = i / chunk;
            int64_t r = cidx < c.cp ? cidx : 2 * c.cp - 1 - cidx;
            int64_t local = row.pstart / c.cp + (cidx < c.cp ? 0 : chunk) + i % chunk;
            size_t at = ((size_t)r * c.heads + h) * c.rows + local;
            L[it] = c.lse_fp64 ? ((const double *)io.glse)[at] : (double)((const float *)io.glse)[at];
            DD[it] = io.gD[at];
        }
        __syncthreads();
        dots(n, d, Q, d, k, 0, S);
        dots(n, dv, O, dv, v, 0, DP);
        __syncthreads();
        for (int it = threadIdx.x; it < n; it += blockDim.x) {
            double p = isfinite(L[it]) ? exp(S[it] * scale - L[it]) : 0;
            P[it] = p;
            DS[it] = isfinite(L[it]) ? p * (DP[it] - DD[it]) * scale : 0;
        }
        __syncthreads();
        for (int kk = 0; kk < kMaxPerThread; kk++) {
            int x = threadIdx.x + kk * blockDim.x;
            if (x < d) {
                double a = acc_k[kk];
                for (int it = 0; it < n; it++)
                    a += DS[it] * Q[(size_t)it * d + x];
                acc_k[kk] = a;
            }
            if (x < dv) {
                double bb = acc_v[kk];
                for (int it = 0; it < n; it++)
                    bb += P[it] * O[(size_t)it * dv + x];
                acc_v[kk] = bb;
            }
        }
    }
    double e0 = 0, r0 = 0, e1 = 0, r1 = 0;
    for (int kk = 0; kk < kMaxPerThread; kk++) {
        int x = threadIdx.x + kk * blockDim.x;
        if (x < d) {
            if (io.ref_dk)
                io.ref_dk[(size_t)kidx * d + x] = acc_k[kk];
            if (row.local >= 0 && io.err && io.dk) {
                size_t at = ((size_t)row.local * c.kv_heads + hk) * d + x;
                e0 += sq_err(load(c.dtype, io.dk, at), acc_k[kk]);
                r0 += acc_k[kk] * acc_k[kk];
            }
        }
        if (x < dv) {
            if (io.ref_dv)
                io.ref_dv[(size_t)kidx * dv + x] = acc_v[kk];
            if (row.local >= 0 && io.err && io.dv) {
                size_t at = ((size_t)row.local * c.kv_heads + hk) * dv + x;
                e1 += sq_err(load(c.dtype, io.dv, at), acc_v[kk]);
                r1 += acc_v[kk] * acc_v[kk];
            }
        }
    }
    e0 = block_sum(e0, red);
    r0 = block_sum(r0, red);
    e1 = block_sum(e1, red);
    r1 = block_sum(r1, red);
    if (threadIdx.x == 0 && io.err) {
        double *o = io.err + (size_t)b * FA4CP_KREF_NERR;
        o[FA4CP_KREF_D0] = e0;
        o[FA4CP_KREF_R0] = r0;
        o[FA4CP_KREF_D1] = e1;
        o[FA4CP_KREF_R1] = r1;
        o[FA4CP_KREF_LSE] = 0;
    }
}

// blocks [0, nq): query rows; [nq, nq + nk): key rows
// at most 64 registers (four blocks of 256 threads per SM; 125 without the
// bound, two blocks): the rows are latency-bound, not register-bound
__global__ void __launch_bounds__(kThreads, 4) rows_kernel(fa4cp_kref_case c, const fa4cp_kref_row *rows, int nq,
                                                        int tk, fa4cp_kref_io io)
{
    extern __shared__ double sm[];
    const int b = blockIdx.x;
    const fa4cp_kref_row row = rows[b];
    if (b < nq)
        query_row(c, row, b, tk, io, sm);
    else
        key_row(c, row, b - nq, b, tk, io, sm);
}

int tile_rows(int d, int dv)
{
    int t = 4096 / (d + dv > 0 ? d + dv : 1);
    return t < 1 ? 1 : t > 32 ? 32 : t;
}

} // namespace

extern "C" int fa4cp_kref_rows(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int nq, int nk,
                               const fa4cp_kref_io *io, void *stream)
{
    if (nq < 0 || nk < 0)
        return (int)cudaErrorInvalidValue;
    if (nq + nk == 0)
        return 0;
    const int d = c->head_dim, dv = c->head_dim_v;
    if (d < 1 || dv < 1 || d > kThreads * kMaxPerThread || dv > kThreads * kMaxPerThread)
        return (int)cudaErrorInvalidValue;
    if (nk > 0 && (!io->glse || !io->gD))
        return (int)cudaErrorInvalidValue;
    const int tk = tile_rows(d, dv);
    size_t words = nk > 0 ? key_smem(d, dv, tk) : query_smem(d, dv, tk);
    if (nq > 0 && query_smem(d, dv, tk) > words)
        words = query_smem(d, dv, tk);
    const size_t smem = sizeof(double) * words;
    cudaError_t e = cudaFuncSetAttribute(rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return (int)e;
    rows_kernel<<<nq + nk, kThreads, smem, (cudaStream_t)stream>>>(*c, drows, nq, tk, *io);
    return (int)cudaGetLastError();
}
