/* comm_table.c - the transport test table (comm_table.h). */
#include "comm_table.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int total_fails(const rank_ctx *j, int n)
{
    int f = 0;
    for (int r = 0; r < n; r++) {
        f += j[r].fails;
        if (j[r].fails)
            diag("rank %d: %s", r, j[r].err);
    }
    return f;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            c->fails++;                                                                            \
            snprintf(c->err, sizeof c->err, __VA_ARGS__);                                          \
        }                                                                                          \
    } while (0)

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        fa4cp_status st_ = (expr);                                                                 \
        if (st_ != FA4CP_OK) {                                                                     \
            c->fails++;                                                                            \
            snprintf(c->err, sizeof c->err, "%s: %s", #expr, fa4cp_last_error());                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* the byte that rank `src` puts at position i of a message to `dst` (tag t) */
static unsigned char pattern(int src, int dst, int t, size_t i)
{
    return (unsigned char)(src * 31 + dst * 7 + t * 13 + (int)(i * 5u));
}

/* ------------------------------------------------------------------ point to point */

static void p2p_body(rank_ctx *c)
{
    const int n = c->n, r = c->rank;
    /* odd, peer-dependent sizes */
#define SZ(src, dst, t) ((size_t)(1 + 37 * (src) + 11 * (dst) + 5 * (t)))
    unsigned char *bufs[64] = {0};
    fa4cp_p2p ops[64];
    for (int round = 0; round < 4; round++) {
        int nops = 0, nb = 0;
        if (round == 0 || round == 1) { /* ring: send right recv left (round 1: recv first) */
            int right = (r + 1) % n, left = (r - 1 + n) % n;
            int order[2] = {round == 0 ? 0 : 1, round == 0 ? 1 : 0};
            for (int k = 0; k < 2; k++) {
                if (order[k] == 0) {
                    size_t b = SZ(r, right, round);
                    bufs[nb] = malloc(b);
                    for (size_t i = 0; i < b; i++)
                        bufs[nb][i] = pattern(r, right, round, i);
                    ops[nops++] = (fa4cp_p2p){right, 1, bufs[nb++], b};
                } else {
                    size_t b = SZ(left, r, round);
                    bufs[nb] = calloc(1, b);
                    ops[nops++] = (fa4cp_p2p){left, 0, bufs[nb++], b};
                }
            }
        } else { /* all pairs (self included); round 3 posts receives first, in reverse */
            for (int k = 0; k < 2 * n; k++) {
                int is_send = round == 2 ? k < n : k >= n;
                int peer = round == 2 ? k % n : n - 1 - k % n;
                size_t b = is_send ? SZ(r, peer, round) : SZ(peer, r, round);
                bufs[nb] = is_send ? malloc(b) : calloc(1, b);
                if (is_send)
                    for (size_t i = 0; i < b; i++)
                        bufs[nb][i] = pattern(r, peer, round, i);
                ops[nops++] = (fa4cp_p2p){peer, is_send, bufs[nb++], b};
            }
        }
        fa4cp_comm_req *req = NULL;
        CALL(fa4cp_comm_sendrecv(c->comm, ops, nops, NULL, &req));
        CALL(fa4cp_comm_wait(c->comm, req, NULL));
        for (int k = 0; k < nops; k++)
            if (!ops[k].is_send)
                for (size_t i = 0; i < ops[k].bytes; i++)
                    CHECK(((unsigned char *)ops[k].buf)[i] == pattern(ops[k].peer, r, round, i),
                          "round %d: byte %zu from rank %d wrong", round, i, ops[k].peer);
        for (int k = 0; k < nb; k++)
            free(bufs[k]);
    }
    /* two groups in flight at once, completed in reverse order */
    {
        int right = (r + 1) % n, left = (r - 1 + n) % n;
        int s1 = r * 10 + 1, s2 = r * 10 + 2, g1 = -1, g2 = -1;
        fa4cp_p2p a[2] = {{right, 1, &s1, sizeof s1}, {left, 0, &g1, sizeof g1}};
        fa4cp_p2p b[2] = {{left, 0, &g2, sizeof g2}, {right, 1, &s2, sizeof s2}};
        fa4cp_comm_req *ra = NULL, *rb = NULL;
        CALL(fa4cp_comm_sendrecv(c->comm, a, 2, NULL, &ra));
        CALL(fa4cp_comm_sendrecv(c->comm, b, 2, NULL, &rb));
        CALL(fa4cp_comm_wait(c->comm, rb, NULL));
        CALL(fa4cp_comm_wait(c->comm, ra, NULL));
        CHECK(g1 == left * 10 + 1 && g2 == left * 10 + 2, "overlapped groups: got %d %d from rank %d",
              g1, g2, left);
    }
#undef SZ
}

/* Random legal orders: in each round every rank sends one message to every
 * rank (itself included) and receives one from every rank, in an order of
 * its own, split into groups of its own, waited in an order of its own;
 * collectives are interleaved between the groups. */
static void random_body(rank_ctx *c)
{
    const int n = c->n, r = c->rank;
    uint64_t st = 0x9e3779b97f4a7c15ull * (uint64_t)(r + 1) + (uint64_t)c->which;
#define RND() (st = st * 6364136223846793005ull + 1442695040888963407ull, (unsigned)(st >> 33))
    for (int round = 0; round < 20; round++) {
        int nops = 2 * n;
        fa4cp_p2p ops[16];
        unsigned char *bufs[16];
        for (int k = 0; k < nops; k++) {
            int is_send = k < n, peer = k % n;
            size_t b = (size_t)((is_send ? r : peer) * 13 + (is_send ? peer : r) * 5 + round * 3) % 29 + 1;
            bufs[k] = malloc(b);
            if (is_send)
                for (size_t i = 0; i < b; i++)
                    bufs[k][i] = pattern(r, peer, round, i);
            ops[k] = (fa4cp_p2p){peer, is_send, bufs[k], b};
        }
        for (int k = nops - 1; k > 0; k--) { /* shuffle */
            int j = (int)(RND() % (unsigned)(k + 1));
            fa4cp_p2p t = ops[k];
            ops[k] = ops[j];
            ops[j] = t;
        }
        fa4cp_comm_req *reqs[16];
        int nreq = 0;
        for (int at = 0; at < nops;) {
            int len = 1 + (int)(RND() % 3u);
            if (at + len > nops)
                len = nops - at;
            CALL(fa4cp_comm_sendrecv(c->comm, ops + at, len, NULL, &reqs[nreq++]));
            at += len;
        }
        int x = r + round, y[8];
        fa4cp_comm_req *cr = NULL;
        CALL(fa4cp_comm_all_gather(c->comm, &x, y, sizeof x, NULL, &cr));
        for (int k = nreq - 1; k > 0; k--) {
            int j = (int)(RND() % (unsigned)(k + 1));
            fa4cp_comm_req *t = reqs[k];
            reqs[k] = reqs[j];
            reqs[j] = t;
        }
        for (int k = 0; k < nreq; k++)
            CALL(fa4cp_comm_wait(c->comm, reqs[k], NULL));
        CALL(fa4cp_comm_wait(c->comm, cr, NULL));
        for (int p = 0; p < n; p++)
            CHECK(y[p] == p + round, "round %d: all_gather block %d", round, p);
        for (int k = 0; k < nops; k++)
            if (!ops[k].is_send)
                for (size_t i = 0; i < ops[k].bytes; i++)
                    CHECK(((unsigned char *)ops[k].buf)[i] == pattern(ops[k].peer, r, round, i),
                          "round %d: byte %zu from rank %d wrong", round, i, ops[k].peer);
        for (int k = 0; k < nops; k++)
            free(bufs[k]);
    }
#undef RND
}

/* ------------------------------------------------------------------ collectives */

static double value_of(int rank, size_t i) { return (double)((rank * 7 + (int)i * 3) % 17) - 8.0 + 0.25 * rank; }

static void coll_body(rank_ctx *c)
{
    const int n = c->n, r = c->rank;
    /* all_gather of an odd byte count */
    {
        size_t b = 13;
        unsigned char send[13], *recv = malloc(b * (size_t)n);
        for (size_t i = 0; i < b; i++)
            send[i] = pattern(r, 0, 9, i);
        fa4cp_comm_req *q = NULL;
        CALL(fa4cp_comm_all_gather(c->comm, send, recv, b, NULL, &q));
        CALL(fa4cp_comm_wait(c->comm, q, NULL));
        for (int p = 0; p < n; p++)
            for (size_t i = 0; i < b; i++)
                CHECK(recv[(size_t)p * b + i] == pattern(p, 0, 9, i), "all_gather block %d byte %zu", p, i);
        free(recv);
    }
    /* all_to_all of an odd byte count */
    {
        size_t b = 7;
        unsigned char *send = malloc(b * (size_t)n), *recv = malloc(b * (size_t)n);
        for (int p = 0; p < n; p++)
            for (size_t i = 0; i < b; i++)
                send[(size_t)p * b + i] = pattern(r, p, 4, i);
        fa4cp_comm_req *q = NULL;
        CALL(fa4cp_comm_all_to_all(c->comm, send, recv, b, NULL, &q));
        CALL(fa4cp_comm_wait(c->comm, q, NULL));
        for (int p = 0; p < n; p++)
            for (size_t i = 0; i < b; i++)
                CHECK(recv[(size_t)p * b + i] == pattern(p, r, 4, i), "all_to_all block %d byte %zu", p, i);
        free(send);
        free(recv);
    }
    /* reductions in every dtype, odd counts; values exact in bf16 */
    for (int dt = FA4CP_BF16; dt <= FA4CP_FP64; dt++) {
        size_t count = 11, es = fa4cp_dtype_size((fa4cp_dtype)dt);
        void *send = malloc(count * (size_t)n * es), *recv = malloc(count * es);
        for (size_t i = 0; i < count * (size_t)n; i++)
            fa4cp_store((fa4cp_dtype)dt, send, i, value_of(r, i));
        fa4cp_comm_req *q = NULL;
        CALL(fa4cp_comm_reduce_scatter(c->comm, send, recv, count, (fa4cp_dtype)dt, NULL, &q));
        CALL(fa4cp_comm_wait(c->comm, q, NULL));
        for (size_t i = 0; i < count; i++) {
            double want = 0;
            for (int p = 0; p < n; p++)
                want += value_of(p, (size_t)r * count + i);
            CHECK(fa4cp_load((fa4cp_dtype)dt, recv, i) == want, "reduce_scatter %s element %zu: %g, want %g",
                  fa4cp_dtype_name((fa4cp_dtype)dt), i, fa4cp_load((fa4cp_dtype)dt, recv, i), want);
        }
        for (int op = 0; op < 2; op++) {
            CALL(fa4cp_comm_all_reduce(c->comm, send, recv, count, (fa4cp_dtype)dt, (fa4cp_reduce_op)op,
                                       NULL, &q));
            CALL(fa4cp_comm_wait(c->comm, q, NULL));
            for (size_t i = 0; i < count; i++) {
                double want = op == 0 ? 0 : -INFINITY;
                for (int p = 0; p < n; p++)
                    want = op == 0 ? want + value_of(p, i) : fmax(want, value_of(p, i));
                CHECK(fa4cp_load((fa4cp_dtype)dt, recv, i) == want, "all_reduce %s op %d element %zu",
                      fa4cp_dtype_name((fa4cp_dtype)dt), op, i);
            }
        }
        /* in place */
        CALL(fa4cp_comm_all_reduce(c->comm, send, send, count, (fa4cp_dtype)dt, FA4CP_REDUCE_SUM, NULL, &q));
        CALL(fa4cp_comm_wait(c->comm, q, NULL));
        for (size_t i = 0; i < count; i++) {
            double want = 0;
            for (int p = 0; p < n; p++)
                want += value_of(p, i);
            CHECK(fa4cp_load((fa4cp_dtype)dt, send, i) == want, "in-place all_reduce %s element %zu",
                  fa4cp_dtype_name((fa4cp_dtype)dt), i);
        }
        free(send);
        free(recv);
    }
    /* several collectives in flight, waited in reverse */
    {
        int a = r, b = 2 * r, ga[8], gb[8];
        fa4cp_comm_req *qa = NULL, *qb = NULL;
        CALL(fa4cp_comm_all_gather(c->comm, &a, ga, sizeof a, NULL, &qa));
        CALL(fa4cp_comm_all_gather(c->comm, &b, gb, sizeof b, NULL, &qb));
        CALL(fa4cp_comm_wait(c->comm, qb, NULL));
        CALL(fa4cp_comm_wait(c->comm, qa, NULL));
        for (int p = 0; p < n; p++)
            CHECK(ga[p] == p && gb[p] == 2 * p, "overlapped all_gathers, block %d", p);
    }
    CALL(fa4cp_comm_barrier(c->comm));
    /* zero-byte operations are legal */
    {
        fa4cp_comm_req *q = NULL;
        CALL(fa4cp_comm_all_gather(c->comm, NULL, NULL, 0, NULL, &q));
        CALL(fa4cp_comm_wait(c->comm, q, NULL));
    }
}

/* ------------------------------------------------------------------ mistakes */

static void mistake_body(rank_ctx *c)
{
    const int n = c->n, r = c->rank;
    fa4cp_comm_req *q = NULL;
    fa4cp_status st = FA4CP_OK;
    char buf[64] = {0};
    switch (c->which) {
    case 0: /* peer out of range: refused at post */
        if (r == 0) {
            fa4cp_p2p op = {n, 1, buf, 8};
            st = fa4cp_comm_sendrecv(c->comm, &op, 1, NULL, &q);
        }
        break;
    case 1: /* rank 0 sends 16 bytes, rank 1 expects 8 */
        if (r == 0) {
            fa4cp_p2p op = {1, 1, buf, 16};
            st = fa4cp_comm_sendrecv(c->comm, &op, 1, NULL, &q);
            if (st == FA4CP_OK)
                st = fa4cp_comm_wait(c->comm, q, NULL);
        } else if (r == 1) {
            fa4cp_p2p op = {0, 0, buf, 8};
            st = fa4cp_comm_sendrecv(c->comm, &op, 1, NULL, &q);
            if (st == FA4CP_OK)
                st = fa4cp_comm_wait(c->comm, q, NULL);
        }
        break;
    case 2: /* rank 1 waits for a message rank 0 never sends */
        if (r == 1) {
            fa4cp_p2p op = {0, 0, buf, 8};
            st = fa4cp_comm_sendrecv(c->comm, &op, 1, NULL, &q);
            if (st == FA4CP_OK)
                st = fa4cp_comm_wait(c->comm, q, NULL);
        }
        break;
    case 3: /* all_gather with sizes that disagree */
        st = fa4cp_comm_all_gather(c->comm, buf, buf + 32, r == 0 ? 4 : 2, NULL, &q);
        if (st == FA4CP_OK)
            st = fa4cp_comm_wait(c->comm, q, NULL);
        break;
    case 4: /* rank 1 never joins the barrier */
        if (r != 1)
            st = fa4cp_comm_barrier(c->comm);
        break;
    case 5: /* different collectives at the same position */
        if (r == 0)
            st = fa4cp_comm_all_to_all(c->comm, buf, buf + 32, 4, NULL, &q);
        else
            st = fa4cp_comm_all_gather(c->comm, buf, buf + 32, 4, NULL, &q);
        if (st == FA4CP_OK)
            st = fa4cp_comm_wait(c->comm, q, NULL);
        break;
    }
    c->st = st;
    snprintf(c->err, sizeof c->err, "%s", st == FA4CP_OK ? "" : fa4cp_last_error());
}

int comm_table_collectives(comm_runner run, int n, double timeout_s)
{
    rank_ctx *j = calloc((size_t)n, sizeof *j);
    if (!j)
        bail("out of memory");
    run(n, timeout_s, coll_body, 0, j);
    int f = total_fails(j, n);
    free(j);
    return f;
}

void comm_table(comm_runner run, int max_ranks)
{
    rank_ctx *j = calloc((size_t)(max_ranks > 3 ? max_ranks : 3), sizeof *j);
    for (int n = 1; n <= max_ranks; n++) {
        run(n, 10.0, p2p_body, 0, j);
        ok(total_fails(j, n) == 0, "%d rank(s): grouped send/recv in four post orders, odd sizes, overlapped groups", n);
        run(n, 10.0, random_body, n, j);
        ok(total_fails(j, n) == 0, "%d rank(s): 20 rounds of random post orders, groupings and wait orders", n);
        run(n, 10.0, coll_body, 0, j);
        ok(total_fails(j, n) == 0,
           "%d rank(s): all_gather, all_to_all, reduce_scatter, all_reduce sum/max (every dtype), barrier", n);
    }

    if (max_ranks < 3) {
        skip(13, "the mistakes need groups of 3 ranks; this run has %d", max_ranks);
        free(j);
        return;
    }
    run(3, 5.0, mistake_body, 0, j);
    ok(j[0].st == FA4CP_ERR_INVALID, "a send to peer 3 of 3 ranks is refused at post");
    like(j[0].err, "peer 3, outside the group of 3 ranks", "... and the message names the peer");

    run(2, 5.0, mistake_body, 1, j);
    ok(j[1].st == FA4CP_ERR_INVALID && j[0].st == FA4CP_OK && j[1].seconds < 2.0,
       "a receive of 8 bytes matched with a send of 16 is an error, not a hang (%.3f s)", j[1].seconds);
    like(j[1].err, "rank 0 sent 16 bytes to rank 1", "... naming the sender and its size");
    like(j[1].err, "rank 1 posted a receive of 8 bytes", "... and the receiver and its size");

    run(2, 0.3, mistake_body, 2, j);
    ok(j[1].st == FA4CP_ERR_TIMEOUT && j[1].seconds < 2.0,
       "a receive with no send times out after the comm's timeout (%.3f s)", j[1].seconds);
    like(j[1].err, "from rank 0", "... naming the peer");

    run(3, 5.0, mistake_body, 3, j);
    int all = 1;
    for (int r = 0; r < 3; r++)
        all &= j[r].st == FA4CP_ERR_INVALID;
    ok(all, "an all_gather whose sizes disagree fails on every rank");
    like(j[1].err, "rank 1 posted 2 bytes", "... naming the sizes (%s)", j[1].err);

    run(3, 0.3, mistake_body, 4, j);
    ok(j[0].st == FA4CP_ERR_TIMEOUT && j[2].st == FA4CP_ERR_TIMEOUT && j[0].seconds < 2.0,
       "a barrier that one rank never joins times out (%.3f s)", j[0].seconds);
    like(j[0].err, "rank(s) 1 never posted it", "... naming the missing rank");

    run(2, 5.0, mistake_body, 5, j);
    ok(j[0].st == FA4CP_ERR_INVALID && j[1].st == FA4CP_ERR_INVALID,
       "all_to_all on one rank against all_gather on another is an error");
    like(j[0].err, "rank 0 posted all_to_all but rank 1 posted all_gather", "... saying which");

    free(j);
}
