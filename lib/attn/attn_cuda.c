/* attn_cuda.c - the cuda attention backend: checks, workspace, launches.
 *
 * Every argument is checked before anything is launched; every CUDA call
 * and launch is checked and reported with file:line.  The kernels live in
 * kernels/ (sm_90a) behind the extern "C" launchers of fa4cp_kernels.h. */
#include "attn_internal.h"
#include "core/internal.h"

#include "../../kernels/fa4cp_kernels.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            FA4CP_FAIL(FA4CP_ERR_CUDA, "cuda attention: %s:%d: %s failed: %s", __FILE__, __LINE__, \
                       #call, cudaGetErrorString(e_));                                             \
    } while (0)

#define MAX_DEVICES 64

/* Devices found to be sm_90 (1; 0: not checked yet), so that a call on one
 * asks only for the current device: these calls are short (a CP step's
 * forward is about 0.1 ms), and what the host spends before the first kernel
 * is time the GPU waits when a call runs alone.  Set with atomics: the CP
 * executor calls from several threads. */
static int device_checked[MAX_DEVICES];

/* Is the current device one the sm_90a kernels run on? */
static fa4cp_status device_ok(void) {
    fa4cp_status st = FA4CP_OK;
    int dev = 0, n = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < MAX_DEVICES &&
        __atomic_load_n(&device_checked[dev], __ATOMIC_RELAXED))
        return FA4CP_OK;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED, "cuda attention: no CUDA device (%s)",
                   e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "cuda attention: device %d has compute capability %d.%d; the kernels are "
                   "built for sm_90a (Hopper, 9.0) only",
                   dev, major, minor);
    if (dev >= 0 && dev < MAX_DEVICES)
        __atomic_store_n(&device_checked[dev], 1, __ATOMIC_RELAXED);
out:
    return st;
}

int fa4cp_attn_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        (void)cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return device_ok() == FA4CP_OK;
}


/* Workspace (dq_accum, Dsum) comes from one stream-ordered memory pool per
 * device, owned by fa4cp, that keeps what it has allocated (release threshold
 * unlimited): repeated backward calls then reuse the memory instead of mapping
 * it again each time, and the process's default pool is left alone. */
static cudaMemPool_t pools[MAX_DEVICES]; /* created under pool_lock, read by atomic loads */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static fa4cp_status workspace_pool(cudaMemPool_t *out_pool) {
    fa4cp_status st = FA4CP_OK;
    int dev = 0;
    int locked = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= MAX_DEVICES)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED, "cuda attention: device %d >= %d", dev, MAX_DEVICES);
    *out_pool = __atomic_load_n(&pools[dev], __ATOMIC_ACQUIRE);
    if (*out_pool)
        return FA4CP_OK;
    pthread_mutex_lock(&pool_lock);
    locked = 1;
    if (!pools[dev]) {
        struct cudaMemPoolProps props = {0};
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX;
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = dev;
        CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
        CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
        __atomic_store_n(&pools[dev], pool, __ATOMIC_RELEASE);
    }
    *out_pool = pools[dev];
out:
    if (locked)
        pthread_mutex_unlock(&pool_lock);
    return st;
}

/* Small workspaces kept per stream.  The forward's work list (and a backward
 * chain's semaphores and list) is a few KB, but a stream-ordered allocation
 * and free of it cost the host 1.6 us a call and the forward's tile counter
 * a memset (1.6 us more, and an operation on the GPU) (H200 host,
 * 2026-11-30 06:14), and a forward that runs alone waits for that before
 * its kernel starts (a CP step's forward is ~0.11 ms).  So each (device,
 * stream) keeps one buffer from the pool, grown (stream-ordered free of the
 * old one, then a new allocation, on that stream) when a call needs more:
 * the calls on one stream run in its order, so they can share it.  A
 * workspace over WS_SMALL_MAX (a backward's dq_accum) is allocated per
 * call.  A slot's lock is held
 * from taking the buffer to the call's last launch, so that a call on
 * another thread cannot free it in between.  Not for a stream being
 * captured (its graph could be replayed on another stream: those calls
 * allocate per call, as does a call once every slot is taken: slots are
 * never given back, streams are known by cudaStreamGetId, which is never
 * reused), nor for the handle cudaStreamPerThread (a stream of each
 * thread's own: allocated per call too, not to rest on its id). */
#define WS_SLOTS 64
#define WS_SMALL_MAX ((size_t)1 << 20)
typedef struct ws_slot {
    pthread_mutex_t lock;
    int dev; /* -1: free */
    unsigned long long sid;
    void *ptr;
    size_t bytes;
} ws_slot;
static ws_slot ws_slots[WS_SLOTS];
static pthread_mutex_t ws_table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static void ws_init(void) {
    for (int i = 0; i < WS_SLOTS; ++i) {
        pthread_mutex_init(&ws_slots[i].lock, NULL);
        ws_slots[i].dev = -1;
    }
}

/* A workspace of `bytes` for a call on stream s: the stream's kept buffer
 * (*slot >= 0: its lock is held, ws_release gives it back) or, where none
 * can be kept, a pool allocation (*slot = -1: free it with free_async).
 * A kept buffer's first WS_CTR bytes are the forward's tile counter
 * (fa4cp_kparams::fwd_ctr: zeroed when the buffer is made, and every
 * forward leaves it 0), *ctr if ctr is not NULL; the workspace follows
 * them.  A pool allocation: *ctr = NULL. */
#define WS_CTR 256
static fa4cp_status ws_acquire(cudaStream_t s, size_t bytes, void **out, int *slot, int **ctr) {
    fa4cp_status st = FA4CP_OK;
    cudaMemPool_t pool = NULL;
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    unsigned long long sid = 0;
    int dev = 0, i = -1;
    ws_slot *w = NULL;
    *out = NULL;
    *slot = -1;
    if (ctr)
        *ctr = NULL;
    FA4CP_TRY(workspace_pool(&pool));
    CUDA_CHECK(cudaGetDevice(&dev));
    if (bytes <= WS_SMALL_MAX && s != cudaStreamPerThread && cudaStreamIsCapturing(s, &cs) == cudaSuccess &&
        cs == cudaStreamCaptureStatusNone && cudaStreamGetId(s, &sid) == cudaSuccess) {
        pthread_once(&ws_once, ws_init);
        pthread_mutex_lock(&ws_table_lock);
        for (int j = 0; j < WS_SLOTS; ++j) {
            if (ws_slots[j].dev == dev && ws_slots[j].sid == sid) {
                i = j;
                break;
            }
            if (ws_slots[j].dev < 0) { /* the first free slot: this stream's */
                ws_slots[j].dev = dev;
                ws_slots[j].sid = sid;
                i = j;
                break;
            }
        }
        pthread_mutex_unlock(&ws_table_lock);
    }
    if (i < 0) {
        CUDA_CHECK(cudaMallocFromPoolAsync(out, bytes, pool, s));
        goto out;
    }
    w = &ws_slots[i];
    pthread_mutex_lock(&w->lock);
    if (w->bytes < WS_CTR + bytes) {
        size_t nb = 4096;
        while (nb < WS_CTR + bytes)
            nb <<= 1;
        if (w->ptr) {
            cudaError_t e = cudaFreeAsync(w->ptr, s);
            w->ptr = NULL;
            w->bytes = 0;
            if (e != cudaSuccess) {
                pthread_mutex_unlock(&w->lock);
                FA4CP_FAIL(FA4CP_ERR_CUDA, "cuda attention: %s:%d: cudaFreeAsync failed: %s", __FILE__, __LINE__,
                           cudaGetErrorString(e));
            }
        }
        cudaError_t e = cudaMallocFromPoolAsync(&w->ptr, nb, pool, s);
        if (e == cudaSuccess)
            e = cudaMemsetAsync(w->ptr, 0, WS_CTR, s);
        if (e != cudaSuccess) {
            if (w->ptr)
                (void)cudaFreeAsync(w->ptr, s);
            w->ptr = NULL;
            pthread_mutex_unlock(&w->lock);
            FA4CP_FAIL(FA4CP_ERR_CUDA, "cuda attention: %s:%d: workspace allocation failed: %s", __FILE__,
                       __LINE__, cudaGetErrorString(e));
        }
        w->bytes = nb;
    }
    *out = (char *)w->ptr + WS_CTR;
    *slot = i;
    if (ctr)
        *ctr = (int *)w->ptr;
out:
    return st;
}

static int misaligned(const void *p) { return ((uintptr_t)p & 15u) != 0; }

/* Checks of the cuda backend (before any launch). */
static fa4cp_status check_args(const fa4cp_attn_args *a, int backward) {
    fa4cp_status st = FA4CP_OK;
    if (!a)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: args is NULL");
    if (a->struct_size < sizeof(fa4cp_attn_args))
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "cuda attention: args.struct_size %zu < %zu: initialise with FA4CP_ATTN_ARGS_INIT",
                   a->struct_size, sizeof(fa4cp_attn_args));
    /* dtype and head dims: the one table (attn_caps.c) */
    FA4CP_TRY(fa4cp_attn_supports(FA4CP_BACKEND_CUDA, a->dtype, a->head_dim, a->head_dim_v, backward));
    if (a->batch < 0 || a->heads <= 0 || a->kv_heads <= 0 || a->total_q < 0 || a->total_k < 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "cuda attention: bad sizes (batch %d, heads %d, kv_heads %d, total_q %lld, "
                   "total_k %lld)",
                   a->batch, a->heads, a->kv_heads, (long long)a->total_q, (long long)a->total_k);
    if (a->heads % a->kv_heads != 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: heads %d is not a multiple of kv_heads %d",
                   a->heads, a->kv_heads);
    if (a->max_seqlen_q < 0 || a->max_seqlen_k < 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: negative max_seqlen (%d, %d)",
                   a->max_seqlen_q, a->max_seqlen_k);
    if (!(a->softmax_scale >= 0.0) || isinf(a->softmax_scale))
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: softmax_scale %g must be finite and >= 0",
                   a->softmax_scale);
    if (a->batch > 0 && (!a->cu_seqlens_q || !a->cu_seqlens_k))
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: cu_seqlens_q/k must be device pointers");
    {
        struct {
            const void *p;
            const char *name;
            int needed;
        } ptrs[] = {
            {a->q, "q", a->total_q > 0},
            {a->out, "out", a->total_q > 0},
            {a->lse, "lse", a->total_q > 0},
            {a->k, "k", a->total_k > 0},
            {a->v, "v", a->total_k > 0},
            {a->dout, "dout", backward && a->total_q > 0},
            {a->dq, "dq", backward && a->total_q > 0 && (!a->dq_carry || (a->carry & FA4CP_CARRY_LAST))},
            {a->dq_carry, "dq_carry", backward && a->total_q > 0 && a->dq_carry},
            {a->dk, "dk", backward && a->total_k > 0},
            {a->dv, "dv", backward && a->total_k > 0},
        };
        for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; ++i) {
            if (!ptrs[i].needed)
                continue;
            if (!ptrs[i].p)
                FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: %s is NULL", ptrs[i].name);
            if (misaligned(ptrs[i].p))
                FA4CP_FAIL(FA4CP_ERR_INVALID,
                           "cuda attention: %s = %p is not 16-byte aligned (the kernels use "
                           "16-byte loads)",
                           ptrs[i].name, ptrs[i].p);
        }
        if (backward && a->dlse && ((uintptr_t)a->dlse & 3u))
            FA4CP_FAIL(FA4CP_ERR_INVALID, "cuda attention: dlse is not 4-byte aligned");
    }
    if ((int64_t)a->heads * a->head_dim * (a->total_q > a->total_k ? a->total_q : a->total_k) >
        ((int64_t)1 << 40))
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED, "cuda attention: tensors too large");
out:
    return st;
}

/* Fill the kernel parameters; reads max_seqlen from the device when 0. */
static fa4cp_status make_params(const fa4cp_attn_args *a, fa4cp_kparams *p) {
    fa4cp_status st = FA4CP_OK;
    int32_t *hcu = NULL;
    cudaStream_t s = (cudaStream_t)a->stream;
    p->is_fp16 = a->dtype == FA4CP_FP16;
    p->batch = a->batch;
    p->heads = a->heads;
    p->kv_heads = a->kv_heads;
    p->head_dim = a->head_dim;
    p->head_dim_v = a->head_dim_v ? a->head_dim_v : a->head_dim;
    p->total_q = a->total_q;
    p->total_k = a->total_k;
    p->cu_q = a->cu_seqlens_q;
    p->cu_k = a->cu_seqlens_k;
    p->used_q = a->seqused_q;
    p->used_k = a->seqused_k;
    p->max_sq = a->max_seqlen_q;
    p->max_sk = a->max_seqlen_k;
    p->scale = (float)(a->softmax_scale > 0.0 ? a->softmax_scale : 1.0 / sqrt((double)a->head_dim));
    p->window_left = a->window_left < 0 ? -1 : a->window_left;
    p->window_right = a->window_right < 0 ? -1 : a->window_right;
    if (a->causal)
        p->window_right = 0;
    p->q = a->q;
    p->k = a->k;
    p->v = a->v;
    p->out = a->out;
    p->lse = (float *)a->lse;
    p->dout = a->dout;
    p->dlse = (const float *)a->dlse;
    p->dq = a->dq;
    p->dk = a->dk;
    p->dv = a->dv;
    p->dq_accum = NULL;
    p->dsum = NULL;
    p->sched = NULL;
    p->sched_cap = 0;
    p->fwd_ctr = NULL;
    p->deterministic = a->deterministic != 0;
    p->chain = 0;
    {
        const char *tn = getenv("FA4CP_CUDA_TUNING"); /* experiments only */
        p->tuning = tn ? strtoll(tn, NULL, 10) : 0;
    }
    p->stream = a->stream;
    if (a->batch > 0 && (p->max_sq == 0 || p->max_sk == 0)) {
        /* physical lengths bound the real ones */
        size_t n = (size_t)a->batch + 1;
        hcu = malloc(2 * n * sizeof *hcu);
        if (!hcu)
            FA4CP_FAIL(FA4CP_ERR_NOMEM, "cuda attention: no memory for %zu cu_seqlens", 2 * n);
        CUDA_CHECK(cudaMemcpyAsync(hcu, a->cu_seqlens_q, n * sizeof *hcu, cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaMemcpyAsync(hcu + n, a->cu_seqlens_k, n * sizeof *hcu, cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaStreamSynchronize(s));
        int mq = 0, mk = 0;
        for (int b = 0; b < a->batch; ++b) {
            int lq = hcu[b + 1] - hcu[b], lk = hcu[n + b + 1] - hcu[n + b];
            if (lq < 0 || lk < 0 || hcu[b + 1] > a->total_q || hcu[n + b + 1] > a->total_k)
                FA4CP_FAIL(FA4CP_ERR_INVALID,
                           "cuda attention: cu_seqlens of sequence %d out of order or past "
                           "total_q/total_k",
                           b);
            mq = lq > mq ? lq : mq;
            mk = lk > mk ? lk : mk;
        }
        if (p->max_sq == 0)
            p->max_sq = mq;
        if (p->max_sk == 0)
            p->max_sk = mk;
    }
out:
    free(hcu);
    return st;
}

/* Entries of the longest-first work list of the kernels (kernels/attn_sched.cuh). */
static int64_t sched_entries(const fa4cp_kparams *p) {
    int64_t longest = p->max_sq > p->max_sk ? p->max_sq : p->max_sk;
    /* blocks of 64 rows, the smallest a kernel takes (the backward's KV
     * blocks at head dims 192 and 256); + 1: the forward's persistent tile
     * counter lives in the last slot */
    int64_t blocks = (longest + 63) / 64;
    /* the forward's packed GQA tiles (kernels/fwd_sched.cuh) take floor(BM / G)
     * tokens of G query heads each, BM >= 64 */
    const int g = p->kv_heads > 0 ? p->heads / p->kv_heads : 1;
    if (g >= 2) {
        const int64_t pt = g < 64 ? 64 / g : 1;
        const int64_t pb = (p->max_sq + pt - 1) / pt;
        blocks = pb > blocks ? pb : blocks;
    }
    return (int64_t)p->batch * blocks + 2;
}

/* The work list (the forward's only workspace; ws_acquire's slot) and,
 * with a kept buffer, the tile counter. */
static fa4cp_status alloc_sched(fa4cp_kparams *p, cudaStream_t s, int *slot) {
    p->sched_cap = sched_entries(p);
    return ws_acquire(s, (size_t)p->sched_cap * sizeof(int), (void **)&p->sched, slot, &p->fwd_ctr);
}

static fa4cp_status free_async(void *ptr, cudaStream_t s, fa4cp_status st) {
    if (ptr) {
        cudaError_t e = cudaFreeAsync(ptr, s);
        if (e != cudaSuccess && st == FA4CP_OK)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "cuda attention: %s:%d: cudaFreeAsync failed: %s",
                                 __FILE__, __LINE__, cudaGetErrorString(e));
    }
    return st;
}

/* The end of a call that took a workspace (ws_acquire): a kept buffer's lock
 * is released, a pool allocation freed (stream-ordered, after the call's
 * kernels). */
static fa4cp_status ws_release(void *ptr, int slot, cudaStream_t s, fa4cp_status st) {
    if (slot >= 0) {
        pthread_mutex_unlock(&ws_slots[slot].lock);
        return st;
    }
    return free_async(ptr, s, st);
}

fa4cp_status fa4cp_attn_cuda_fwd(const fa4cp_attn_args *a) {
    fa4cp_status st = FA4CP_OK;
    fa4cp_kparams p;
    int slot = -1;
    p.sched = NULL;
    FA4CP_TRY(check_args(a, 0));
    if (a->total_q >= ((int64_t)1 << 30) || a->total_k >= ((int64_t)1 << 30))
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "cuda attention forward: %lld query / %lld key rows: the kernel's TMA row "
                   "coordinates take fewer than 2^30 rows",
                   (long long)a->total_q, (long long)a->total_k);
    FA4CP_TRY(device_ok());
    FA4CP_TRY(make_params(a, &p));
    if (a->batch == 0 || a->total_q == 0)
        goto out;
    FA4CP_TRY(alloc_sched(&p, (cudaStream_t)a->stream, &slot));
    CUDA_CHECK((cudaError_t)fa4cp_kernel_attn_fwd(&p));
out:
    return ws_release(p.sched, slot, a ? (cudaStream_t)a->stream : NULL, st);
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

_Static_assert(FA4CP_KCHAIN_FIRST == FA4CP_CARRY_FIRST && FA4CP_KCHAIN_LAST == FA4CP_CARRY_LAST,
               "the kernels' chain bits are fa4cp.h's carry bits");

fa4cp_status fa4cp_attn_cuda_bwd(const fa4cp_attn_args *a) {
    fa4cp_status st = FA4CP_OK;
    fa4cp_kparams p;
    cudaStream_t s = NULL;
    char *ws = NULL;
    int slot = -1;
    FA4CP_TRY(check_args(a, 1));
    FA4CP_TRY(device_ok());
    FA4CP_TRY(make_params(a, &p));
    s = (cudaStream_t)a->stream;
    if (a->batch == 0) {
        /* no sequence: every row is padding */
        size_t es = fa4cp_dtype_size(a->dtype);
        if (a->total_q > 0 && (!a->dq_carry || (a->carry & FA4CP_CARRY_LAST)))
            CUDA_CHECK(cudaMemsetAsync(a->dq, 0, (size_t)a->total_q * a->heads * a->head_dim * es, s));
        if (a->total_k > 0) {
            size_t kb = (size_t)a->total_k * a->kv_heads * a->head_dim * es;
            size_t vb = (size_t)a->total_k * a->kv_heads * (a->head_dim_v ? a->head_dim_v : a->head_dim) * es;
            CUDA_CHECK(cudaMemsetAsync(a->dk, 0, kb, s));
            CUDA_CHECK(cudaMemsetAsync(a->dv, 0, vb, s));
        }
        goto out;
    }
    {
        /* The workspace in one piece (ws_acquire: the stream's kept buffer
         * where it is small, else one pool allocation and free a call
         * instead of four of each), each part 256-byte aligned: Dsum
         * [heads][total_q] and dq_accum [heads][total_q][head_dim] (fp32, with
         * queries), the deterministic call's semaphores (also without
         * queries: the main kernel's CTAs take tickets from them), the work
         * list. */
        const size_t rows = (size_t)a->total_q * (size_t)a->heads;
        const size_t n_acc = rows * (size_t)a->head_dim * sizeof(float);
        const size_t n_sem = p.deterministic ? (size_t)fa4cp_kernel_bwd_sem_count(&p) * sizeof(int32_t) : 0;
        /* a chain (dq_carry): Dsum and dq_accum live in the caller's buffer
         * from its first call to its last, in the same layout (sized by
         * fa4cp_attn_bwd_carry_bytes), the workspace holds the rest */
        const int chain = a->dq_carry != NULL;
        const size_t o_acc = fa4cp_attn_cuda_acc_offset(rows);
        p.sched_cap = sched_entries(&p);
        const size_t o_sem = chain ? 0 : align256(o_acc + n_acc), o_sched = align256(o_sem + n_sem);
        const size_t total = o_sched + (size_t)p.sched_cap * sizeof(int);
        FA4CP_TRY(ws_acquire(s, total, (void **)&ws, &slot, NULL));
        char *acc = chain ? (char *)a->dq_carry : ws;
        p.dsum = rows ? (float *)acc : NULL;
        p.dq_accum = rows ? (float *)(acc + o_acc) : NULL;
        p.dq_sem = n_sem ? (int *)(ws + o_sem) : NULL;
        p.sched = (int *)(ws + o_sched);
        p.chain = chain ? FA4CP_KCHAIN | (a->carry & (FA4CP_CARRY_FIRST | FA4CP_CARRY_LAST)) |
                              (a->carry & FA4CP_CARRY_NO_LEFT_WINDOW ? FA4CP_KCHAIN_NLW : 0)
                        : 0;
    }
    CUDA_CHECK((cudaError_t)fa4cp_kernel_attn_bwd(&p));
out:
    return ws_release(ws, slot, s, st);
}
