/* test_cp_plan.c - CP plans against hand-derived tables, the executor's
 * trace against its plan (every shape, cp 1..4), the refusals with their
 * messages, and the shard/unshard helpers. */
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D FA4CP_CP_CASE_DIAGONAL
#define L FA4CP_CP_CASE_LOWER
#define U FA4CP_CP_CASE_UPPER

/* {kv_rank, case} per step, derived by hand from the chunk positions:
 * rank r holds chunks r and 2cp-1-r; forward step s uses the block of rank
 * (r-s) mod cp, backward step s the block of rank (r+s) mod cp. */
typedef struct row {
    int cp, r;
    int fwd[4][2], bwd[4][2];
} row;

static const row table[] = {
    {1, 0, {{0, D}}, {{0, D}}},
    {2, 0, {{0, D}, {1, U}}, {{0, D}, {1, U}}},
    {2, 1, {{1, D}, {0, L}}, {{1, D}, {0, L}}},
    {3, 0, {{0, D}, {2, U}, {1, U}}, {{0, D}, {1, U}, {2, U}}},
    {3, 1, {{1, D}, {0, L}, {2, U}}, {{1, D}, {2, U}, {0, L}}},
    {3, 2, {{2, D}, {1, L}, {0, L}}, {{2, D}, {0, L}, {1, L}}},
    {4, 1, {{1, D}, {0, L}, {3, U}, {2, U}}, {{1, D}, {2, U}, {3, U}, {0, L}}},
    {4, 3, {{3, D}, {2, L}, {1, L}, {0, L}}, {{3, D}, {0, L}, {1, L}, {2, L}}},
};

static int step_ok(const fa4cp_cp_step *s, int kv, int c)
{
    if (s->kv_rank != kv || (int)s->mask_case != c || s->merge != FA4CP_CP_MERGE_LSE)
        return 0;
    switch (c) {
    case D: return s->causal == 1 && s->q_half == -1 && s->kv_half == -1;
    case L: return s->causal == 0 && s->q_half == -1 && s->kv_half == 0;
    case U: return s->causal == 0 && s->q_half == 1 && s->kv_half == -1;
    }
    return 0;
}

static fa4cp_cp_config config(fa4cp_cp_comm_type comm, int causal, int h, int hk)
{
    fa4cp_cp_config c = FA4CP_CP_CONFIG_INIT;
    c.comm = comm;
    c.causal = causal;
    c.heads = h;
    c.kv_heads = hk;
    c.head_dim = 64;
    return c;
}

static void plans(void)
{
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++) {
        const row *w = &table[t];
        fa4cp_cp_config c = config(FA4CP_CP_P2P, 1, 8, 8);
        fa4cp_cp_plan *p = NULL;
        int good = fa4cp_cp_plan_build(&c, w->cp, w->r, &p) == FA4CP_OK && p->nfwd == w->cp && p->nbwd == w->cp;
        for (int s = 0; good && s < w->cp; s++) {
            good &= step_ok(&p->fwd[s], w->fwd[s][0], w->fwd[s][1]);
            good &= step_ok(&p->bwd[s], w->bwd[s][0], w->bwd[s][1]);
            /* forward: KV to r+1, from r-1, except after the last step; backward: dK/dV every step */
            good &= p->fwd[s].send_to == (s + 1 < w->cp ? (w->r + 1) % w->cp : -1);
            good &= p->fwd[s].recv_from == (s + 1 < w->cp ? (w->r + w->cp - 1) % w->cp : -1);
            good &= p->bwd[s].send_to == (w->cp > 1 ? (w->r + w->cp - 1) % w->cp : -1);
        }
        ok(good, "p2p causal plan of cp %d rank %d matches the hand-derived table", w->cp, w->r);
        fa4cp_cp_plan_free(p);
    }
    /* not causal: every step full x full */
    {
        fa4cp_cp_config c = config(FA4CP_CP_P2P, 0, 8, 8);
        fa4cp_cp_plan *p = NULL;
        int good = fa4cp_cp_plan_build(&c, 3, 2, &p) == FA4CP_OK;
        for (int s = 0; good && s < 3; s++)
            good &= p->fwd[s].mask_case == FA4CP_CP_CASE_FULL && p->fwd[s].q_half == -1 &&
                    p->fwd[s].kv_half == -1 && !p->fwd[s].causal && p->fwd[s].kv_rank == (2 - s + 3) % 3 &&
                    p->bwd[s].mask_case == FA4CP_CP_CASE_FULL && p->bwd[s].kv_rank == (2 + s) % 3;
        ok(good, "p2p without a mask: every step is full x full, the ring in both directions");
        fa4cp_cp_plan_free(p);
    }
    /* all_gather: chunk r sees chunks 0..r, chunk 2cp-1-r sees 0..2cp-1-r */
    {
        fa4cp_cp_config c = config(FA4CP_CP_ALL_GATHER, 1, 8, 8);
        c.window_left = 64;
        fa4cp_cp_plan *p = NULL;
        int good = fa4cp_cp_plan_build(&c, 3, 1, &p) == FA4CP_OK && p->nfwd == 2 && p->nbwd == 2;
        good = good && p->fwd[0].mask_case == FA4CP_CP_CASE_PREFIX && p->fwd[0].q_half == 0 &&
               p->fwd[0].kv_chunks == 2 && p->fwd[1].q_half == 1 && p->fwd[1].kv_chunks == 5 &&
               p->fwd[0].merge == FA4CP_CP_MERGE_COPY && p->fwd[0].window_left == 64 &&
               p->bwd[1].kv_chunks == 5;
        ok(good, "all_gather causal plan of cp 3 rank 1: chunk 1 over 2 chunks, chunk 4 over 5");
        fa4cp_cp_plan_free(p);
        c.causal = 0;
        good = fa4cp_cp_plan_build(&c, 3, 1, &p) == FA4CP_OK && p->fwd[0].kv_chunks == 6 && p->fwd[1].kv_chunks == 6;
        ok(good, "all_gather without a causal mask: every chunk over all 6 chunks");
        fa4cp_cp_plan_free(p);
    }
    {
        fa4cp_cp_config c = config(FA4CP_CP_A2A, 1, 12, 4);
        fa4cp_cp_plan *p = NULL;
        int good = fa4cp_cp_plan_build(&c, 4, 2, &p) == FA4CP_OK && p->nfwd == 1 && p->nbwd == 1 &&
                   p->fwd[0].mask_case == FA4CP_CP_CASE_HEADS && p->fwd[0].head_group == 2 && p->fwd[0].causal;
        ok(good, "a2a plan: one step, whole sequences on head group = rank");
        fa4cp_cp_plan_free(p);
    }
    /* the printed plan (fa4cp-run --explain) */
    {
        fa4cp_cp_config c = config(FA4CP_CP_P2P, 1, 8, 8);
        fa4cp_cp_plan *p = NULL;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        int good = fa4cp_cp_plan_build(&c, 3, 1, &p) == FA4CP_OK && fa4cp_cp_plan_print(p, f) == FA4CP_OK;
        fclose(f);
        ok(good, "plan_print writes the plan");
        like(text, "cp plan: comm p2p, layout thd, cp 3, rank 1 (chunks 1 and 4), causal", "... a header line");
        like(text, "fwd step 1: lower    Q chunks 1+4 x KV of rank 0 (chunk 0), no mask", "... the lower case");
        like(text, "fwd step 2: upper    Q chunk 4 x KV of rank 2 (chunks 2+3), no mask", "... the upper case");
        like(text, "bwd step 2: lower", "... and the backward steps");
        /* --explain prints the same operations the executor runs: one line each */
        int lines = 0;
        for (size_t i = 0; text && i < len; i++)
            lines += text[i] == '\n';
        ok(good && lines == 1 + p->nfwd_ops + p->nbwd_ops, "the printed plan has one line per operation (%d)", lines);
        like(text, "fwd sendrecv: k+v to rank 2, from rank 0 (beside step 0)", "... the exchanges among them");
        like(text, "bwd sendrecv: dk+dv to rank 0 (its owner), this rank's own from rank 2", "... and the last one");
        free(text);
        fa4cp_cp_plan_free(p);
    }
}

static void refusals(void)
{
    const char *a2a_p2p = "cp.comm 'a2a+p2p' is disabled: the hierarchical a2a+p2p path is not validated; "
                          "use p2p across nodes or a2a within a node";
    fa4cp_cp_comm_type comm = FA4CP_CP_P2P;
    ok(fa4cp_cp_comm_parse("a2a+p2p", &comm) == FA4CP_ERR_UNSUPPORTED, "'a2a+p2p' is refused by the parser");
    is_string(fa4cp_last_error(), a2a_p2p, "... with the exact message");
    fa4cp_cp_config c = config(FA4CP_CP_A2A_P2P, 1, 8, 8);
    int32_t cu[3] = {0, 8, 16};
    ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "... and by validate when given as an enum");
    is_string(fa4cp_last_error(), a2a_p2p, "... with the same message");
    ok(fa4cp_cp_comm_parse("all_gather", &comm) == FA4CP_OK && comm == FA4CP_CP_ALL_GATHER &&
           fa4cp_cp_comm_parse("p2p", &comm) == FA4CP_OK && comm == FA4CP_CP_P2P &&
           fa4cp_cp_comm_parse("a2a", &comm) == FA4CP_OK && comm == FA4CP_CP_A2A,
       "p2p, all_gather and a2a parse");
    ok(fa4cp_cp_comm_parse("ring2", &comm) == FA4CP_ERR_INVALID, "an unknown name is invalid");
    like(fa4cp_last_error(), "expected p2p, all_gather or a2a", "... listing the known names");

    /* head dims: the attention table decides, before anything is allocated
     * (no GPU needed: the cuda row is plain data) */
    for (int comm3 = 0; comm3 < 3; comm3++) {
        c = config((fa4cp_cp_comm_type)comm3, 1, 8, 8);
        c.backend = FA4CP_BACKEND_CUDA;
        c.head_dim = 192; /* (192, 64): no cuda family (kernels/fwd_launch.h) */
        c.head_dim_v = 64;
        ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "%s on cuda: (192, 64) is refused",
           fa4cp_cp_comm_name(c.comm));
        like(fa4cp_last_error(), "(64, 64), (80, 80)", "... naming the head dims cuda has kernels for");
        c.backend = FA4CP_BACKEND_CPU;
        ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_OK, "%s on cpu: (192, 64) is valid",
           fa4cp_cp_comm_name(c.comm));
    }
    c = config(FA4CP_CP_P2P, 1, 8, 8);
    c.head_dim_v = -4;
    ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_ERR_INVALID, "head_dim_v -4 is refused");
    like(fa4cp_last_error(), "head_dim_v is -4", "... naming it");

    c = config(FA4CP_CP_P2P, 1, 8, 8);
    c.window_left = 64;
    c.window_right = 0;
    ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "p2p with a window (64,0) is refused");
    like(fa4cp_last_error(), "cp.comm 'p2p' does not support a sliding window (window_left 64, window_right 0)",
         "... naming the window");
    like(fa4cp_last_error(), "the shapes that do are 'all_gather' and 'a2a'", "... and the shapes that support it");
    c.window_left = -1;
    c.window_right = 32;
    c.causal = 0;
    ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "p2p with a right window is refused too");
    c.causal = 1;
    c.window_right = 0;
    ok(fa4cp_cp_validate(&c, 2, 2, cu, 0) == FA4CP_OK, "p2p causal with window_right 0 (just causal) is fine");

    c = config(FA4CP_CP_A2A, 1, 12, 2);
    ok(fa4cp_cp_validate(&c, 4, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "a2a with kv_heads 2 over cp 4 is refused");
    like(fa4cp_last_error(),
         "cp.comm 'a2a' needs heads % cp == 0 and kv_heads % cp == 0, but heads is 12, kv_heads 2 and cp 4",
         "... naming heads, kv_heads and cp");
    c = config(FA4CP_CP_A2A, 1, 10, 10);
    ok(fa4cp_cp_validate(&c, 4, 2, cu, 0) == FA4CP_ERR_UNSUPPORTED, "a2a with heads 10 over cp 4 is refused");
    c = config(FA4CP_CP_A2A, 1, 12, 4);
    ok(fa4cp_cp_validate(&c, 4, 2, cu, 0) == FA4CP_OK, "a2a with 12/4 heads over cp 4 is fine");

    int32_t bad[3] = {0, 8, 18};
    c = config(FA4CP_CP_ALL_GATHER, 1, 8, 8);
    ok(fa4cp_cp_validate(&c, 2, 2, bad, 0) == FA4CP_ERR_INVALID, "a THD length not divisible by 2*cp is refused");
    like(fa4cp_last_error(), "sequence 1 has padded length 10, not divisible by 2*cp = 4: pad it to 12 (2 more rows)",
         "... saying which sequence and how to pad it");
    c.format = FA4CP_CP_BSHD;
    ok(fa4cp_cp_validate(&c, 3, 2, NULL, 100) == FA4CP_ERR_INVALID, "a BSHD seqlen not divisible by 2*cp is refused");
    like(fa4cp_last_error(), "seqlen 100 is not divisible by 2*cp = 6", "... with the numbers (%s)", fa4cp_last_error());
    ok(fa4cp_cp_validate(&c, 3, 2, NULL, 96) == FA4CP_OK, "seqlen 96 over cp 3 is fine");

    /* the executor refuses what validate refuses, before touching anything */
    fa4cp_local_world *w = NULL;
    fa4cp_comm *comm1 = NULL;
    fa4cp_cp *cp = NULL;
    fa4cp_local_world_create(1, 0, 5.0, &w);
    fa4cp_local_comm(w, 0, &comm1);
    c = config(FA4CP_CP_P2P, 1, 8, 8);
    c.window_left = 3;
    ok(fa4cp_cp_create(&c, comm1, &cp) == FA4CP_ERR_UNSUPPORTED && !cp, "create refuses p2p with a window");
    c.window_left = -1;
    c.backend = FA4CP_BACKEND_CUDA;
    ok(fa4cp_cp_create(&c, comm1, &cp) == FA4CP_ERR_UNSUPPORTED && !cp,
       "create refuses the cuda backend over a host transport");
    like(fa4cp_last_error(), "must live in the same memory", "... saying why");
    c.backend = FA4CP_BACKEND_CPU;
    ok(fa4cp_cp_create(&c, comm1, &cp) == FA4CP_OK, "create p2p over 1 rank");
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    int32_t odd[2] = {0, 7};
    a.batch = 1;
    a.cu_seqlens = odd;
    ok(fa4cp_cp_fwd(cp, &a) == FA4CP_ERR_INVALID, "fwd refuses a length not divisible by 2*cp");
    like(fa4cp_last_error(), "not divisible by 2*cp = 2", "... with the same message");
    fa4cp_cp_args bad_args = a;
    bad_args.struct_size = 8;
    ok(fa4cp_cp_fwd(cp, &bad_args) == FA4CP_ERR_INVALID, "fwd checks struct_size");
    /* the step timings come from CUDA events: none on the cpu backend */
    ok(fa4cp_cp_set_timing(cp, 1) == FA4CP_ERR_UNSUPPORTED, "timings are refused on the cpu backend");
    like(fa4cp_last_error(), "CUDA events", "... saying why");
    fa4cp_cp_timing t = FA4CP_CP_TIMING_INIT;
    ok(fa4cp_cp_last_timing(cp, &t) == FA4CP_ERR_INVALID, "no timings before a timed call");
    t.struct_size = 4;
    ok(fa4cp_cp_last_timing(cp, &t) == FA4CP_ERR_INVALID, "last_timing checks struct_size");
    fa4cp_cp_destroy(cp);
    fa4cp_comm_destroy(comm1);
    fa4cp_local_world_destroy(w);

    /* device memory (builds with CUDA; no GPU needed to create the world):
     * the cpu backend cannot run over it, fp64 cannot run on the cuda backend */
    w = NULL;
    comm1 = NULL;
    if (fa4cp_local_world_create(1, 1, 5.0, &w) == FA4CP_OK && fa4cp_local_comm(w, 0, &comm1) == FA4CP_OK) {
        c = config(FA4CP_CP_P2P, 1, 8, 8);
        ok(fa4cp_cp_create(&c, comm1, &cp) == FA4CP_ERR_UNSUPPORTED && !cp,
           "create refuses the cpu backend over device memory");
        like(fa4cp_last_error(), "must live in the same memory", "... saying why");
        c.backend = FA4CP_BACKEND_CUDA;
        c.dtype = FA4CP_FP64;
        ok(fa4cp_cp_create(&c, comm1, &cp) == FA4CP_ERR_UNSUPPORTED && !cp,
           "create refuses fp64 on the cuda backend");
        like(fa4cp_last_error(), "bf16 or fp16", "... naming what works");
    } else {
        skip(4, "no CUDA in this build: device memory is refused (test_comm)");
    }
    fa4cp_comm_destroy(comm1);
    fa4cp_local_world_destroy(w);

    /* NCCL with threads: one GPU per rank */
    int devs[2] = {0, 0};
    fa4cp_comm *nc[2] = {NULL, NULL};
    ok(fa4cp_nccl_local_comms(2, devs, 5.0, nc) == FA4CP_ERR_UNSUPPORTED && !nc[0] && !nc[1],
       "nccl with two ranks on one GPU is refused (or NCCL is not built in)");
    like(fa4cp_last_error(), fa4cp_nccl_available() ? "one GPU per rank" : "without NCCL", "... saying why");
}

typedef struct mjob {
    fa4cp_comm *comm;
    fa4cp_cp_config cfg;
    fa4cp_status st;
    char err[600];
} mjob;

static void *mjob_main(void *p)
{
    mjob *j = p;
    fa4cp_cp *cp = NULL;
    j->st = fa4cp_cp_create(&j->cfg, j->comm, &cp);
    snprintf(j->err, sizeof j->err, "%s", j->st ? fa4cp_last_error() : "");
    fa4cp_cp_destroy(cp);
    return NULL;
}

/* ranks that disagree on the shape fail at create, all of them */
static void mismatch(void)
{
    fa4cp_local_world *w = NULL;
    mjob j[2];
    pthread_t th[2];
    memset(j, 0, sizeof j);
    fa4cp_local_world_create(2, 0, 5.0, &w);
    for (int r = 0; r < 2; r++) {
        fa4cp_local_comm(w, r, &j[r].comm);
        j[r].cfg = config(FA4CP_CP_ALL_GATHER, r == 0, 8, 8);
        pthread_create(&th[r], NULL, mjob_main, &j[r]);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    ok(j[0].st == FA4CP_ERR_INVALID && j[1].st == FA4CP_ERR_INVALID,
       "create fails on every rank when one is causal and the other not");
    like(j[1].err, "rank 1 has comm all_gather, layout thd, bf16, heads 8/8, head_dim 64, causal 0",
         "... naming this rank's shape");
    like(j[1].err, "but rank 0 has comm all_gather, layout thd, bf16, heads 8/8, head_dim 64, causal 1",
         "... and the other's");
    /* ... and when they differ in the head dim of v only */
    for (int r = 0; r < 2; r++) {
        j[r].cfg = config(FA4CP_CP_P2P, 1, 8, 8);
        j[r].cfg.head_dim_v = r == 0 ? 0 : 32;
        pthread_create(&th[r], NULL, mjob_main, &j[r]);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    ok(j[0].st == FA4CP_ERR_INVALID && j[1].st == FA4CP_ERR_INVALID,
       "create fails on every rank when head_dim_v differs (0 = head_dim 64 against 32)");
    like(j[1].err, "head_dim_v 32 but rank 0", "... naming this rank's head_dim_v");
    like(j[1].err, "head_dim_v 64: every rank", "... and the other's (0 read as head_dim)");
    for (int r = 0; r < 2; r++)
        fa4cp_comm_destroy(j[r].comm);
    fa4cp_local_world_destroy(w);
}

/* ---- the executor runs exactly its plan: a forward and a backward on every
 * rank of a local group, and the operations each ran (fa4cp_cp_last_trace)
 * against the rank's plan, operation by operation */
typedef struct tjob {
    fa4cp_comm *comm;
    fa4cp_cp_config cfg;
    int with_dlse;
    int32_t cu[3], used[2];
    int good_fwd, good_bwd, nfwd, nbwd;
    size_t ws_fwd, ws_bwd; /* what the calls allocated */
    char err[600];
} tjob;

static int same_ops(const fa4cp_cp_instr *run, int nrun, const fa4cp_cp_instr *plan, int nplan, int with_opt)
{
    int k = 0;
    for (int i = 0; i < nplan; i++) {
        if (plan[i].optional && !with_opt)
            continue;
        if (k >= nrun || run[k].op != plan[i].op || run[k].step != plan[i].step ||
            run[k].tensors != plan[i].tensors || run[k].send_to != plan[i].send_to ||
            run[k].recv_from != plan[i].recv_from)
            return 0;
        k++;
    }
    return k == nrun;
}

static void *tjob_main(void *p)
{
    tjob *j = p;
    fa4cp_cp *cp = NULL;
    fa4cp_cp_plan *plan = NULL;
    const int n = fa4cp_comm_size(j->comm), r = fa4cp_comm_rank(j->comm);
    const size_t T = (size_t)j->cu[2] / (size_t)n, h = (size_t)j->cfg.heads, d = (size_t)j->cfg.head_dim;
    const size_t dv = j->cfg.head_dim_v ? (size_t)j->cfg.head_dim_v : d;
    const size_t qn = T * h * d, kn = T * (size_t)j->cfg.kv_heads * d;
    const size_t on = T * h * dv, vn = T * (size_t)j->cfg.kv_heads * dv; /* out, dout; v, dv */
    float *buf = calloc(2 * qn + 2 * on + 2 * kn + 2 * vn + 2 * T * h + 16, sizeof(float));
    test_rng rng = {0x5eed + (uint64_t)r};
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    const fa4cp_cp_instr *ops = NULL;
    int nops = 0;
    if (!buf)
        goto out;
    float *q = buf, *out = q + qn, *dout = out + on, *dq = dout + on, *k = dq + qn, *v = k + kn;
    float *dk = v + vn, *dgv = dk + kn, *lse = dgv + vn, *dlse = lse + T * h;
    test_fill(&rng, FA4CP_FP32, q, qn, 1.0);
    test_fill(&rng, FA4CP_FP32, k, kn + vn, 1.0);
    test_fill(&rng, FA4CP_FP32, dout, on, 1.0);
    test_fill(&rng, FA4CP_FP32, dlse, T * h, 0.1);
    a.batch = 2;
    a.cu_seqlens = j->cu;
    a.seqused = j->used;
    a.q = q, a.k = k, a.v = v, a.out = out, a.lse = lse;
    a.dout = dout, a.dlse = j->with_dlse ? dlse : NULL, a.dq = dq, a.dk = dk, a.dv = dgv;
    if (fa4cp_cp_create(&j->cfg, j->comm, &cp) || fa4cp_cp_plan_build(&j->cfg, n, r, &plan) ||
        fa4cp_cp_fwd(cp, &a) || fa4cp_cp_last_trace(cp, &ops, &nops))
        goto out;
    j->good_fwd = same_ops(ops, nops, plan->fwd_ops, plan->nfwd_ops, 1);
    j->nfwd = nops;
    j->ws_fwd = fa4cp_cp_last_workspace(cp);
    if (fa4cp_cp_bwd(cp, &a) || fa4cp_cp_last_trace(cp, &ops, &nops))
        goto out;
    j->good_bwd = same_ops(ops, nops, plan->bwd_ops, plan->nbwd_ops, j->with_dlse);
    j->nbwd = nops;
    j->ws_bwd = fa4cp_cp_last_workspace(cp);
out:
    snprintf(j->err, sizeof j->err, "%s", fa4cp_last_error());
    fa4cp_cp_plan_free(plan);
    fa4cp_cp_destroy(cp);
    free(buf);
    return NULL;
}

static void traces(void)
{
    static const fa4cp_cp_comm_type shapes[] = {FA4CP_CP_P2P, FA4CP_CP_ALL_GATHER, FA4CP_CP_A2A};
    for (int si = 0; si < 3; si++)
        for (int cp = 1; cp <= 4; cp++) {
            fa4cp_local_world *w = NULL;
            tjob j[4];
            pthread_t th[4];
            int good = fa4cp_local_world_create(cp, 0, 30.0, &w) == FA4CP_OK, nf = 0, nb = 0;
            memset(j, 0, sizeof j);
            for (int r = 0; good && r < cp; r++) {
                good &= fa4cp_local_comm(w, r, &j[r].comm) == FA4CP_OK;
                j[r].cfg = config(shapes[si], cp % 2, 12, 12);
                j[r].cfg.head_dim = 8;
                j[r].cfg.head_dim_v = si == 1 ? 12 - 8 * (cp % 2) : cp % 2 ? 0 : 12; /* 4, 8 or 12 */
                j[r].cfg.dtype = FA4CP_FP32;
                j[r].with_dlse = cp % 2 == 0;
                j[r].cu[0] = 0, j[r].cu[1] = 4 * cp, j[r].cu[2] = 6 * cp;
                j[r].used[0] = 4 * cp - 1, j[r].used[1] = 2 * cp;
            }
            for (int r = 0; good && r < cp; r++)
                pthread_create(&th[r], NULL, tjob_main, &j[r]);
            for (int r = 0; good && r < cp; r++) {
                pthread_join(th[r], NULL);
                good &= j[r].good_fwd && j[r].good_bwd && j[r].nfwd > 0 && j[r].nbwd > 0;
                nf += j[r].nfwd, nb += j[r].nbwd;
            }
            ok(good, "%s cp %d head_dim_v %d: every rank's trace is its plan (%d forward, %d backward operations%s)%s%s",
               fa4cp_cp_comm_name(shapes[si]), cp, j[0].cfg.head_dim_v, nf, nb, j[0].with_dlse ? ", with dlse" : "",
               good ? "" : ": ", good ? "" : j[0].err);
            /* the memory estimate asks the executor: never less than a call
             * allocates, and not far above */
            size_t est = fa4cp_cp_workspace_bytes(&j[0].cfg, cp, 2, 6 * cp, 1), most = 0;
            for (int r = 0; r < cp; r++) {
                most = j[r].ws_fwd > most ? j[r].ws_fwd : most;
                most = j[r].ws_bwd > most ? j[r].ws_bwd : most;
            }
            ok(good && most > 0 && est >= most && est <= most + most / 4 + 1024,
               "%s cp %d: fa4cp_cp_workspace_bytes %zu bounds the %zu bytes a call allocated",
               fa4cp_cp_comm_name(shapes[si]), cp, est, most);
            for (int r = 0; r < cp; r++)
                fa4cp_comm_destroy(j[r].comm);
            fa4cp_local_world_destroy(w);
        }
}

static void shards(void)
{
    /* two sequences of padded lengths 8 and 4, cp 2: chunks of 2 and 1 rows */
    int32_t cu[3] = {0, 8, 12};
    int32_t g[12], l0[6], l1[6], back[12];
    for (int i = 0; i < 12; i++)
        g[i] = i;
    ok(fa4cp_cp_shard(2, cu, 2, 0, sizeof(int32_t), g, l0) == FA4CP_OK &&
           fa4cp_cp_shard(2, cu, 2, 1, sizeof(int32_t), g, l1) == FA4CP_OK,
       "shard rows to ranks 0 and 1");
    int want0[6] = {0, 1, 6, 7, 8, 11}, want1[6] = {2, 3, 4, 5, 9, 10};
    ok(memcmp(l0, want0, sizeof want0) == 0 && memcmp(l1, want1, sizeof want1) == 0,
       "rank r holds chunks r and 2cp-1-r of each sequence, in that order");
    memset(back, 0xff, sizeof back);
    fa4cp_cp_unshard(2, cu, 2, 0, sizeof(int32_t), l0, back);
    fa4cp_cp_unshard(2, cu, 2, 1, sizeof(int32_t), l1, back);
    ok(memcmp(back, g, sizeof g) == 0, "unshard puts every row back");
    /* lse [h=2, rows] */
    double gl[24], ll[12], gb[24];
    for (int i = 0; i < 24; i++)
        gl[i] = i;
    fa4cp_cp_shard_lse(2, cu, 2, 1, 2, sizeof(double), gl, ll);
    ok(ll[0] == 2 && ll[5] == 10 && ll[6] == 14 && ll[11] == 22, "shard_lse takes the rows of every head");
    memset(gb, 0, sizeof gb);
    fa4cp_cp_unshard_lse(2, cu, 2, 1, 2, sizeof(double), ll, gb);
    ok(gb[14] == 14 && gb[22] == 22 && gb[12] == 0, "unshard_lse writes only the rank's rows");
    int32_t bcu[3];
    fa4cp_cp_bshd_cu(2, 16, bcu);
    ok(bcu[0] == 0 && bcu[1] == 16 && bcu[2] == 32 && fa4cp_cp_local_rows(2, bcu, 4) == 8,
       "bshd is thd with cu = i*seqlen; local rows = total/cp");
    ok(fa4cp_cp_shard(2, cu, 3, 0, 4, g, l0) == FA4CP_ERR_INVALID, "shard refuses lengths not divisible by 2*cp");
}

int main(void)
{
    plan(0);
    plans();
    refusals();
    mismatch();
    traces();
    shards();
    return done_testing();
}
