// ref.cu - the check's reference on the GPU: deliberately simple.
//
// One block computes one query row (out, lse, dq of one query head) or one
// key row (dk, dv of one kv head) in double precision, streaming over the
// other side's rows in small tiles that it regenerates itself with the
// generator (gen_math.h), exactly as the float64 host reference
// (lib/run/gen.c: fa4cp_ref_query_rows / fa4cp_ref_key_rows) does: same
// masks, same formulas; only the summation order differs.  It shares no code
// with the attention kernels it checks (no tensor cores, no fp32 softmax, no
// tiles of the real kernels) and reads nothing of theirs but the outputs it
// compares, and, for key rows, the CP forward's lse and D = rowsum(dout*out)
// (as the host reference does).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "gen_math.h"
#include "run_kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPerThread = 4; // dims per thread: head_dim <= 1024

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

// Generate `nrows` rows (d elements each, doubles) into dst: row r is
// (tensor_of(r), token_of(r), head_of(r)); the block's threads share the pairs.
template <typename RowFn>
__device__ void gen_rows(const fa4cp_kref_case &c, int nrows, double *dst, RowFn rowfn)
{
    int d = c.head_dim, pairs = (d + 1) / 2;
    for (int it = threadIdx.x; it < nrows * pairs; it += blockDim.x) {
        int r = it / pairs, p = it % pairs;
        int tensor, head;
        int64_t token;
        rowfn(r, &tensor, &token, &head);
        double e, o;
        gm_pair(gm_row_key(c.seed, tensor, token, head), p, &e, &o);
        dst[(size_t)r * d + 2 * p] = rounded(c.dtype, e);
        if (2 * p + 1 < d)
            dst[(size_t)r * d + 2 * p + 1] = rounded(c.dtype, o);
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

__global__ void __launch_bounds__(kThreads) query_kernel(fa4cp_kref_case c, const fa4cp_kref_row *rows, int tk,
                                                         const void *gout, const void *glse, const void *gdq,
                                                         double *ref_out, double *ref_lse, double *ref_dq,
                                                         double *err)
{
    extern __shared__ double sm[];
    const int d = c.head_dim, group = c.heads / c.kv_heads;
    const fa4cp_kref_row row = rows[blockIdx.x];
    const int hk = row.head / group;
    double *q = sm, *dout = q + d, *K = dout + d, *V = K + (size_t)tk * d;
    double *S = V + (size_t)tk * d, *DP = S + tk, *P = DP + tk, *red = P + tk;
    const double scale = c.scale;

    gen_rows(c, c.backward ? 2 : 1, q, [&](int r, int *t, int64_t *tok, int *h) {
        *t = r ? T_DOUT : T_Q;
        *tok = row.base + row.pos;
        *h = row.head;
    });
    if (!c.backward)
        for (int x = threadIdx.x; x < d; x += blockDim.x)
            dout[x] = 0;
    double acc_o[kMaxPerThread], acc_a[kMaxPerThread], acc_b[kMaxPerThread];
    for (int k = 0; k < kMaxPerThread; k++)
        acc_o[k] = acc_a[k] = acc_b[k] = 0;
    double m = -INFINITY, l = 0;
    int64_t lo, hi;
    key_range(c, row.len, row.pos, &lo, &hi);
    for (int64_t t0 = lo; t0 <= hi; t0 += tk) {
        const int nk = (int)(hi - t0 + 1 < tk ? hi - t0 + 1 : tk);
        __syncthreads(); // the previous tile is consumed (and q, dout are written)
        gen_rows(c, 2 * nk, K, [&](int r, int *t, int64_t *tok, int *h) {
            // rows 0..nk-1: K, then nk..2nk-1: V (V follows K at K + tk*d)
            int j = r < nk ? r : r - nk;
            *t = r < nk ? T_K : T_V;
            *tok = row.base + t0 + j;
            *h = hk;
        });
        // V rows were written at K + nk*d; move the base so that V[j] = K + (nk + j) * d
        __syncthreads();
        const double *Vt = K + (size_t)nk * d;
        dots(nk, d, K, d, q, 0, S);
        dots(nk, d, Vt, d, dout, 0, DP);
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
            if (x >= d)
                break;
            double o = acc_o[k] * corr, a = acc_a[k] * corr, b = acc_b[k] * corr;
            for (int j = 0; j < nk; j++) {
                double pj = P[j], kx = K[(size_t)j * d + x];
                o += pj * Vt[(size_t)j * d + x];
                a += pj * DP[j] * kx;
                b += pj * kx;
            }
            acc_o[k] = o;
            acc_a[k] = a;
            acc_b[k] = b;
        }
        m = mn;
    }
    (void)V;
    __syncthreads(); // q, dout written (no key at all: the loop never synced)
    double lse = l > 0 ? m + log(l) : -INFINITY;
    double dsum = 0;
    for (int k = 0; k < kMaxPerThread; k++) {
        int x = threadIdx.x + k * blockDim.x;
        if (x >= d)
            break;
        if (l > 0)
            acc_o[k] /= l;
        dsum += dout[x] * acc_o[k];
    }
    double D = block_sum(dsum, red);
    double e0 = 0, r0 = 0, e1 = 0, r1 = 0;
    for (int k = 0; k < kMaxPerThread; k++) {
        int x = threadIdx.x + k * blockDim.x;
        if (x >= d)
            break;
        double dq = l > 0 ? scale * (acc_a[k] / l - D * acc_b[k] / l) : 0;
        if (ref_out)
            ref_out[(size_t)blockIdx.x * d + x] = acc_o[k];
        if (ref_dq && c.backward)
            ref_dq[(size_t)blockIdx.x * d + x] = dq;
        if (row.local >= 0 && err) {
            size_t at = ((size_t)row.local * c.heads + row.head) * d + x;
            e0 += sq_err(load(c.dtype, gout, at), acc_o[k]);
            r0 += acc_o[k] * acc_o[k];
            if (c.backward) {
                e1 += sq_err(load(c.dtype, gdq, at), dq);
                r1 += dq * dq;
            }
        }
    }
    e0 = block_sum(e0, red);
    r0 = block_sum(r0, red);
    e1 = block_sum(e1, red);
    r1 = block_sum(r1, red);
    if (threadIdx.x == 0) {
        if (ref_lse)
            ref_lse[blockIdx.x] = lse;
        if (err) {
            double *o = err + (size_t)blockIdx.x * FA4CP_KREF_NERR;
            o[FA4CP_KREF_D0] = e0;
            o[FA4CP_KREF_R0] = r0;
            o[FA4CP_KREF_D1] = e1;
            o[FA4CP_KREF_R1] = r1;
            double le = 0;
            if (row.local >= 0) {
                size_t at = (size_t)row.head * c.rows + row.local;
                double got = c.lse_fp64 ? ((const double *)glse)[at] : (double)((const float *)glse)[at];
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

__global__ void __launch_bounds__(kThreads) key_kernel(fa4cp_kref_case c, const fa4cp_kref_row *rows, int tk,
                                                       const void *glse, const double *gD, const void *gdk,
                                                       const void *gdv, double *ref_dk, double *ref_dv, double *err)
{
    extern __shared__ double sm[];
    const int d = c.head_dim, group = c.heads / c.kv_heads;
    const fa4cp_kref_row row = rows[blockIdx.x];
    const int hk = row.head;
    double *k = sm, *v = k + d, *Q = v + d, *O = Q + (size_t)tk * d;
    double *S = O + (size_t)tk * d, *DP = S + tk, *P = DP + tk, *DS = P + tk, *L = DS + tk, *DD = L + tk;
    double *red = DD + tk;
    const double scale = c.scale;

    gen_rows(c, 2, k, [&](int r, int *t, int64_t *tok, int *h) {
        *t = r ? T_V : T_K;
        *tok = row.base + row.pos;
        *h = hk;
    });
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
        gen_rows(c, 2 * n, Q, [&](int r, int *t, int64_t *tok, int *h) {
            int it = r < n ? r : r - n;
            int64_t item = t0 + it;
            *t = r < n ? T_Q : T_DOUT;
            *tok = row.base + lo + item / group;
            *h = hk * group + (int)(item % group);
        });
        for (int it = threadIdx.x; it < n; it += blockDim.x) {
            int64_t item = t0 + it, i = lo + item / group;
            int h = hk * group + (int)(item % group);
            // the gathered [cp, heads, rows] index of query i (lib/thd: global_to_local)
            int64_t cidx = i / chunk;
            int64_t r = cidx < c.cp ? cidx : 2 * c.cp - 1 - cidx;
            int64_t local = row.pstart / c.cp + (cidx < c.cp ? 0 : chunk) + i % chunk;
            size_t at = ((size_t)r * c.heads + h) * c.rows + local;
            L[it] = c.lse_fp64 ? ((const double *)glse)[at] : (double)((const float *)glse)[at];
            DD[it] = gD[at];
        }
        __syncthreads();
        const double *Ot = Q + (size_t)n * d;
        dots(n, d, Q, d, k, 0, S);
        dots(n, d, Ot, d, v, 0, DP);
        __syncthreads();
        for (int it = threadIdx.x; it < n; it += blockDim.x) {
            double p = isfinite(L[it]) ? exp(S[it] * scale - L[it]) : 0;
            P[it] = p;
            DS[it] = isfinite(L[it]) ? p * (DP[it] - DD[it]) * scale : 0;
        }
        __syncthreads();
        for (int kk = 0; kk < kMaxPerThread; kk++) {
            int x = threadIdx.x + kk * blockDim.x;
            if (x >= d)
                break;
            double a = acc_k[kk], b = acc_v[kk];
            for (int it = 0; it < n; it++) {
                b += P[it] * Ot[(size_t)it * d + x];
                a += DS[it] * Q[(size_t)it * d + x];
            }
            acc_k[kk] = a;
            acc_v[kk] = b;
        }
    }
    (void)O;
    double e0 = 0, r0 = 0, e1 = 0, r1 = 0;
    for (int kk = 0; kk < kMaxPerThread; kk++) {
        int x = threadIdx.x + kk * blockDim.x;
        if (x >= d)
            break;
        if (ref_dk)
            ref_dk[(size_t)blockIdx.x * d + x] = acc_k[kk];
        if (ref_dv)
            ref_dv[(size_t)blockIdx.x * d + x] = acc_v[kk];
        if (row.local >= 0 && err) {
            size_t at = ((size_t)row.local * c.kv_heads + hk) * d + x;
            e0 += sq_err(load(c.dtype, gdk, at), acc_k[kk]);
            r0 += acc_k[kk] * acc_k[kk];
            e1 += sq_err(load(c.dtype, gdv, at), acc_v[kk]);
            r1 += acc_v[kk] * acc_v[kk];
        }
    }
    e0 = block_sum(e0, red);
    r0 = block_sum(r0, red);
    e1 = block_sum(e1, red);
    r1 = block_sum(r1, red);
    if (threadIdx.x == 0 && err) {
        double *o = err + (size_t)blockIdx.x * FA4CP_KREF_NERR;
        o[FA4CP_KREF_D0] = e0;
        o[FA4CP_KREF_R0] = r0;
        o[FA4CP_KREF_D1] = e1;
        o[FA4CP_KREF_R1] = r1;
        o[FA4CP_KREF_LSE] = 0;
    }
}

int tile_rows(int d)
{
    int t = 2048 / (d > 0 ? d : 1);
    return t < 1 ? 1 : t > 32 ? 32 : t;
}

} // namespace

extern "C" int fa4cp_kref_query(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int n, const void *dout_,
                                const void *dlse, const void *ddq, double *ref_out, double *ref_lse, double *ref_dq,
                                double *err, void *stream)
{
    if (n <= 0)
        return 0;
    if (c->head_dim > kThreads * kMaxPerThread)
        return (int)cudaErrorInvalidValue;
    int tk = tile_rows(c->head_dim);
    size_t smem = sizeof(double) * ((size_t)2 * c->head_dim + (size_t)2 * tk * c->head_dim + 3 * (size_t)tk + 32);
    cudaError_t e = cudaFuncSetAttribute(query_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return (int)e;
    query_kernel<<<n, kThreads, smem, (cudaStream_t)stream>>>(*c, drows, tk, dout_, dlse, ddq, ref_out, ref_lse,
                                                               ref_dq, err);
    return (int)cudaGetLastError();
}

extern "C" int fa4cp_kref_key(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int n, const void *glse,
                              const double *gD, const void *ddk, const void *ddv, double *ref_dk, double *ref_dv,
                              double *err, void *stream)
{
    if (n <= 0)
        return 0;
    if (c->head_dim > kThreads * kMaxPerThread)
        return (int)cudaErrorInvalidValue;
    int tk = tile_rows(c->head_dim);
    size_t smem = sizeof(double) * ((size_t)2 * c->head_dim + (size_t)2 * tk * c->head_dim + 6 * (size_t)tk + 32);
    cudaError_t e = cudaFuncSetAttribute(key_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return (int)e;
    key_kernel<<<n, kThreads, smem, (cudaStream_t)stream>>>(*c, drows, tk, glse, gD, ddk, ddv, ref_dk, ref_dv, err);
    return (int)cudaGetLastError();
}
