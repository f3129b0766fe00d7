/* test_world_nccl.c - the nccl transport on real GPUs: one rank of a two-rank
 * world bootstrapped through the Slurm fallback (NCCL_COMM_ID), started twice
 * by tests/nccl.sh.  Rank 0 writes TAP; rank 1 writes its own TAP to a file
 * and nccl.sh reports its verdict.  Needs two GPUs (nccl.sh skips without). */
#include "comm/comm.h"
#include "tap.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 8 /* floats per block */

static float *dev(size_t n)
{
    float *p = NULL;
    if (cudaMalloc((void **)&p, n * sizeof(float)) != cudaSuccess)
        bail("cudaMalloc of %zu floats failed", n);
    cudaMemset(p, 0, n * sizeof(float));
    return p;
}

static void put(float *d, const float *h, size_t n) { cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice); }
static void get(float *h, const float *d, size_t n) { cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost); }

/* post an op, make the stream wait, synchronise */
static int finish(fa4cp_comm *c, fa4cp_status st, fa4cp_comm_req *rq, cudaStream_t s)
{
    if (st != FA4CP_OK) {
        diag("post: %s", fa4cp_last_error());
        return 0;
    }
    st = c->ops->wait(c, rq, s);
    if (st != FA4CP_OK) {
        diag("wait: %s", fa4cp_last_error());
        return 0;
    }
    return cudaStreamSynchronize(s) == cudaSuccess;
}

int main(int argc, char **argv)
{
    int ngpu = 0;
    if (argc > 1 && strcmp(argv[1], "--count-gpus") == 0) {
        if (cudaGetDeviceCount(&ngpu) != cudaSuccess)
            ngpu = 0;
        printf("%d\n", ngpu);
        return 0;
    }
    plan(0);
    fa4cp_world *w = NULL;
    fa4cp_layout *l = NULL;
    fa4cp_nccl_comms cs = {0};
    fa4cp_world_config wc = FA4CP_WORLD_CONFIG_INIT;
    wc.kind = FA4CP_WORLD_SLURM;
    if (fa4cp_world_init(&wc, &w) != FA4CP_OK)
        bail("world: %s", fa4cp_last_error());
    int me = fa4cp_world_rank(w), n = fa4cp_world_size(w);
    ok(n == 2, "rank %d: world of 2 from the Slurm environment", me);
    if (fa4cp_layout_build(fa4cp_world_table(w), n, 2, 0, 0, &l) != FA4CP_OK)
        bail("layout: %s", fa4cp_last_error());
    fa4cp_nccl_config nc = FA4CP_NCCL_CONFIG_INIT;
    nc.timeout_s = 5;
    fa4cp_status st = fa4cp_nccl_comm_create(w, l, &nc, &cs);
    ok(st == FA4CP_OK, "communicators created (%s)", st ? fa4cp_last_error() : "world, cp, dp");
    if (st != FA4CP_OK)
        return done_testing();
    ok(cs.world->size == 2 && cs.world->rank == me, "world comm: rank %d of 2", me);
    ok(cs.cp->size == 2 && cs.cp->rank == me, "CP comm (split): rank %d of 2", me);
    ok(cs.dp->size == 1 && cs.dp->rank == 0, "DP comm (split): size 1");
    ok(strcmp(cs.cp->name, "nccl") == 0 && cs.cp->device_memory == 1, "transport 'nccl', device memory");

    fa4cp_comm *c = cs.cp;
    cudaStream_t s;
    cudaStreamCreate(&s);
    float h[4 * N], want[4 * N];
    float *a = dev(4 * N), *b = dev(4 * N);
    fa4cp_comm_req *rq = NULL;

    /* all_gather */
    for (int i = 0; i < N; i++)
        h[i] = (float)(me * 100 + i);
    put(a, h, N);
    ok(finish(c, c->ops->all_gather(c, a, b, N * sizeof(float), s, &rq), rq, s), "all_gather runs");
    get(h, b, 2 * N);
    int good = 1;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < N; i++)
            good &= h[r * N + i] == (float)(r * 100 + i);
    ok(good, "all_gather: rank order");

    /* all_reduce sum and max */
    for (int i = 0; i < N; i++)
        h[i] = (float)(me + 1) * (float)i;
    put(a, h, N);
    ok(finish(c, c->ops->all_reduce(c, a, b, N, FA4CP_FP32, FA4CP_REDUCE_SUM, s, &rq), rq, s), "all_reduce runs");
    get(h, b, N);
    good = 1;
    for (int i = 0; i < N; i++)
        good &= h[i] == 3.0f * (float)i;
    ok(good, "all_reduce: sum");
    for (int i = 0; i < N; i++)
        h[i] = me ? (float)i : -(float)i;
    put(a, h, N);
    finish(c, c->ops->all_reduce(c, a, b, N, FA4CP_FP32, FA4CP_REDUCE_MAX, s, &rq), rq, s);
    get(h, b, N);
    good = 1;
    for (int i = 0; i < N; i++)
        good &= h[i] == (float)i;
    ok(good, "all_reduce: max");

    /* reduce_scatter: block p of every rank summed into rank p */
    for (int i = 0; i < 2 * N; i++)
        h[i] = (float)(i + me);
    put(a, h, 2 * N);
    ok(finish(c, c->ops->reduce_scatter(c, a, b, N, FA4CP_FP32, s, &rq), rq, s), "reduce_scatter runs");
    get(h, b, N);
    good = 1;
    for (int i = 0; i < N; i++)
        good &= h[i] == (float)(2 * (me * N + i) + 1);
    ok(good, "reduce_scatter: my block, summed");

    /* all_to_all: block p goes to rank p */
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < N; i++)
            h[p * N + i] = (float)(me * 1000 + p * 100 + i);
    put(a, h, 2 * N);
    ok(finish(c, c->ops->all_to_all(c, a, b, N * sizeof(float), s, &rq), rq, s), "all_to_all runs");
    get(h, b, 2 * N);
    good = 1;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < N; i++)
            good &= h[p * N + i] == (float)(p * 1000 + me * 100 + i);
    ok(good, "all_to_all: block p came from rank p");

    /* sendrecv: a ring step (send to next, receive from previous) */
    for (int i = 0; i < N; i++)
        want[i] = h[i] = (float)(me * 7 + i);
    put(a, h, N);
    fa4cp_p2p ops[2] = {{.peer = (me + 1) % 2, .is_send = 1, .buf = a, .bytes = N * sizeof(float)},
                        {.peer = (me + 1) % 2, .is_send = 0, .buf = b, .bytes = N * sizeof(float)}};
    ok(finish(c, c->ops->sendrecv(c, ops, 2, s, &rq), rq, s), "sendrecv runs");
    get(h, b, N);
    good = 1;
    for (int i = 0; i < N; i++)
        good &= h[i] == (float)((1 - me) * 7 + i);
    ok(good, "sendrecv: the peer's block arrived");
    (void)want;

    ok(c->ops->barrier(c) == FA4CP_OK, "barrier");
    ok(cs.world->ops->barrier(cs.world) == FA4CP_OK, "barrier on the world comm");

    /* the watchdog: rank 1 never joins this all_reduce; rank 0 must fail
     * within the timeout with an error, not hang */
    if (me == 0) {
        double t0 = (double)time(NULL);
        st = c->ops->all_reduce(c, a, b, N, FA4CP_FP32, FA4CP_REDUCE_SUM, s, &rq);
        if (st == FA4CP_OK)
            st = c->ops->wait(c, rq, s);
        if (st == FA4CP_OK)
            st = c->ops->barrier(c);
        double dt = (double)time(NULL) - t0;
        ok(st == FA4CP_ERR_PEER, "a collective the peer never joins fails (%s)", fa4cp_last_error());
        like(fa4cp_last_error(), "not done after 5 s", "the message gives the timeout");
        ok(dt <= 20, "within the watchdog timeout (%.0f s)", dt);
        ok(c->ops->barrier(c) == FA4CP_ERR_PEER, "the aborted comm refuses later calls");
    } else {
        sleep(12); /* stay alive while rank 0 times out */
    }
    cudaStreamDestroy(s);
    cudaFree(a);
    cudaFree(b);
    fa4cp_nccl_comms_destroy(&cs);
    fa4cp_layout_destroy(l);
    fa4cp_world_finalize(w);
    return done_testing();
}
