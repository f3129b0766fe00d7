/* test_cp.c - context-parallel attention against the non-CP reference.
 *
 * usage: test_cp [quick]   (FA4CP_TEST_ROUNDS=n: n draws per cell, default 2)
 *
 * The matrix: cp in {1,2,3,4} x comm in {p2p, all_gather, a2a} x mask in
 * {none, causal, window (64,0), window (32,32)} (windows not with p2p, which
 * refuses them) x layout in {bshd, thd, thd with padding between sequences};
 * heads (8/8, 12/2, 12/4; a2a picks what divides cp), head dims (64, 128, and
 * (96, 64): v narrower than q/k) and storage dtype (fp64, fp32, bf16) rotate
 * through the cases.  Then the matrix again with head_dim_v != head_dim in
 * every case (wider and narrower v, MLA's (192, 128)), every shape.  Every case
 * draws fresh lengths (0 included) and inputs, runs the non-CP reference
 * (fa4cp_attn_fwd/bwd, cpu backend) on the global tensors, shards them, runs
 * cp ranks as threads over the local transport (forward, then backward on
 * the CP forward's own out/lse), unshards and compares out, lse, dq, dk, dv
 * on real rows; padding rows separately: out/lse untouched (poison), dq/dk/dv
 * exactly 0; no NaN/Inf anywhere else.
 */
#include "fa4cp.h"
#include "cp_case.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the ranks */

static void *rank_main(void *p)
{
    cp_rank *j = p;
    fa4cp_cp *cp = NULL;
    fa4cp_cp_args a;
    j->st = fa4cp_cp_create(&j->c->cfg, j->comm, &cp);
    if (j->st == FA4CP_OK) {
        cp_cp_args(j->c, &j->h, &a);
        j->st = fa4cp_cp_fwd(cp, &a);
        if (j->st == FA4CP_OK)
            j->st = fa4cp_cp_bwd(cp, &a);
    }
    if (j->st != FA4CP_OK)
        snprintf(j->err, sizeof j->err, "%s", fa4cp_last_error());
    fa4cp_cp_destroy(cp);
    return NULL;
}

/* The CP ranks as threads over the local transport; results into g's last set. */
static int run_cp(const cp_tcase *c, cp_global *g, char *err, size_t errn)
{
    fa4cp_local_world *w = NULL;
    fa4cp_comm *comms[CP_MAXRANKS];
    if (fa4cp_local_world_create(c->cp, 0, 30.0, &w) != FA4CP_OK)
        bail("local world: %s", fa4cp_last_error());
    for (int r = 0; r < c->cp; r++)
        if (fa4cp_local_comm(w, r, &comms[r]) != FA4CP_OK)
            bail("local comm: %s", fa4cp_last_error());
    int good = cp_run_ranks(c, g, comms, 1, rank_main, err, errn);
    for (int r = 0; r < c->cp; r++)
        fa4cp_comm_destroy(comms[r]);
    fa4cp_local_world_destroy(w);
    return good;
}

/* the largest error seen per storage dtype, as a fraction of its tolerance */
static double worst[4];

static double tol_of(const cp_tcase *c)
{
    switch (c->cfg.dtype) {
    case FA4CP_FP64: return 1e-10;
    case FA4CP_FP32: return 1e-5;
    default: return c->cfg.heads != c->cfg.kv_heads ? 3.5e-2 : 2.5e-2;
    }
}

/* ------------------------------------------------------------------ one case */

static int run_case(test_rng *rng, cp_tcase *c)
{
    char desc[400], err[700] = "";
    cp_global g;
    fa4cp_attn_args a;
    int good = 1;
    cp_describe(c, desc, sizeof desc);
    cp_global_alloc(rng, c, &g, 2); /* set 0: the reference, set 1: CP */
    cp_attn_args(c, &g, 0, &a);
    if (fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK || fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK)
        bail("reference failed for %s: %s", desc, fa4cp_last_error());
    if (!run_cp(c, &g, err, sizeof err)) {
        diag("%s: %s", desc, err);
        good = 0;
    } else {
        good = cp_check(c, desc, "the non-CP reference", &g, 0, tol_of(c), &worst[c->cfg.dtype]);
    }
    cp_global_free(&g);
    return good;
}

/* heads/kv_heads that a2a can split over cp (GQA where possible) */
static void pick_heads(int comm, int cp, int idx, int *h, int *hk)
{
    static const int opts[][2] = {{8, 8}, {12, 2}, {12, 4}};
    if (comm != FA4CP_CP_A2A) {
        *h = opts[idx % 3][0];
        *hk = opts[idx % 3][1];
        return;
    }
    static const int a2a[][2] = {{8, 8}, {12, 2}, {12, 4}, {12, 3}, {6, 6}, {12, 6}};
    for (int k = 0; k < 6; k++) {
        int j = (idx + k) % 6;
        if (a2a[j][0] % cp == 0 && a2a[j][1] % cp == 0) {
            *h = a2a[j][0];
            *hk = a2a[j][1];
            return;
        }
    }
    *h = *hk = 4 * cp;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    test_rng rng = test_rng_init("test_cp");
    static const int masks[][3] = {{0, -1, -1}, {1, -1, -1}, {0, 64, 0}, {0, 32, 32}};
    static const char *mask_names[] = {"no mask", "causal", "window (64,0)", "window (32,32)"};
    static const fa4cp_dtype dts[] = {FA4CP_FP64, FA4CP_FP32, FA4CP_BF16};
    int idx = 0, rounds = 2;
    const char *re = getenv("FA4CP_TEST_ROUNDS");
    if (re && atoi(re) > 0)
        rounds = atoi(re);
    plan(0);
    for (int cp = 1; cp <= 4; cp++)
        for (int comm = 0; comm < 3; comm++)
            for (int mk = 0; mk < 4; mk++) {
                if (comm == FA4CP_CP_P2P && mk >= 2)
                    continue; /* refused: see test_cp_plan */
                int pass = 0, total = 0;
                for (int f = 0; f < 3 * rounds; f++, idx++) {
                    cp_tcase c = cp_case(cp, (fa4cp_cp_comm_type)comm, FA4CP_BACKEND_CPU);
                    c.cfg.format = f % 3 == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                    c.pad = f % 3 == 2;
                    c.cfg.causal = masks[mk][0];
                    c.cfg.window_left = masks[mk][1];
                    c.cfg.window_right = masks[mk][2];
                    c.cfg.dtype = dts[(idx + cp) % 3];
                    static const int dims[][2] = {{64, 0}, {128, 128}, {96, 64}};
                    c.cfg.head_dim = dims[(idx / 3) % 3][0];
                    c.cfg.head_dim_v = dims[(idx / 3) % 3][1];
                    pick_heads(comm, cp, idx / 2 + cp, &c.cfg.heads, &c.cfg.kv_heads);
                    c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                    c.with_dlse = idx % 2;
                    int maxlen = mk >= 2 ? 96 : 64;
                    if (quick)
                        maxlen /= 2;
                    if (c.cfg.head_dim >= 96)
                        maxlen = maxlen * 3 / 4;
                    cp_fill_lengths(&rng, &c, maxlen);
                    total++;
                    pass += run_case(&rng, &c);
                }
                ok(pass == total, "cp=%d %s %s: %d/%d cases (bshd, thd, thd+pad) match the reference",
                   cp, fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), mask_names[mk], pass, total);
            }
    /* head_dim_v != head_dim in every case: every shape, cp 1..4, every mask
     * it takes, bshd, thd and thd with padding, v narrower and wider than
     * q/k (and MLA's 192/128 in a few), fp64, fp32 and bf16 */
    for (int comm = 0; comm < 3; comm++) {
        int pass = 0, total = 0;
        for (int cp = 1; cp <= 4; cp++)
            for (int mk = 0; mk < 4; mk++) {
                if (comm == FA4CP_CP_P2P && mk >= 2)
                    continue;
                for (int f = 0; f < 3; f++, idx++) {
                    static const int dims[][2] = {{48, 32}, {16, 40}, {32, 8}, {24, 64}, {192, 128}};
                    cp_tcase c = cp_case(cp, (fa4cp_cp_comm_type)comm, FA4CP_BACKEND_CPU);
                    c.cfg.format = f == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                    c.pad = f == 2;
                    c.cfg.causal = masks[mk][0];
                    c.cfg.window_left = masks[mk][1];
                    c.cfg.window_right = masks[mk][2];
                    c.cfg.dtype = dts[(idx + cp) % 3];
                    int which = idx % 5;
                    c.cfg.head_dim = dims[which][0];
                    c.cfg.head_dim_v = dims[which][1];
                    pick_heads(comm, cp, idx / 2 + cp, &c.cfg.heads, &c.cfg.kv_heads);
                    c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                    c.with_dlse = idx % 2;
                    int maxlen = which == 4 ? 24 : mk >= 2 ? 64 : 48;
                    if (quick)
                        maxlen /= 2;
                    cp_fill_lengths(&rng, &c, maxlen);
                    total++;
                    pass += run_case(&rng, &c);
                }
            }
        ok(pass == total, "%s, head_dim_v != head_dim: %d/%d cases (cp 1-4, every mask, bshd, thd, thd+pad) match the reference",
           fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), pass, total);
    }
    /* long single sequences with windows shorter than a chunk and longer */
    for (int comm = 1; comm < 3; comm++) {
        int pass = 0, total = 0;
        for (int cp = 2; cp <= 4; cp++, idx++) {
            cp_tcase c = cp_case(cp, (fa4cp_cp_comm_type)comm, FA4CP_BACKEND_CPU);
            c.cfg.format = FA4CP_CP_THD;
            c.pad = 1;
            c.cfg.causal = cp % 2;
            c.cfg.window_left = 5 + cp;
            c.cfg.window_right = cp == 3 ? -1 : 3;
            c.cfg.dtype = FA4CP_FP64;
            c.cfg.head_dim = 16;
            c.cfg.heads = c.cfg.kv_heads = 4 * cp;
            c.B = 2;
            c.cu[0] = 0;
            c.cu[1] = 24 * cp;
            c.used[0] = 24 * cp - 3;
            c.cu[2] = c.cu[1] + 8 * cp;
            c.used[1] = 8 * cp;
            total++;
            pass += run_case(&rng, &c);
        }
        ok(pass == total, "%s: small windows across chunk borders, causal and not (%d/%d)",
           fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), pass, total);
    }
    /* padding-only chunks and empty sequences (TE #2186, Megatron-LM #1764):
     * cp 4, chunk of 4 rows; lengths 0, 1 (one real row on rank 0 only),
     * 13 (rank 3's second chunk is all padding), 16 (full) and a sequence
     * that is padding only; every shape, causal and not, bf16 and fp64 */
    for (int comm = 0; comm < 3; comm++)
        for (int causal = 0; causal < 2; causal++) {
            int pass = 0, total = 0;
            for (int k = 0; k < 2; k++, idx++) {
                cp_tcase c = cp_case(4, (fa4cp_cp_comm_type)comm, FA4CP_BACKEND_CPU);
                c.cfg.format = FA4CP_CP_THD;
                c.pad = 1;
                c.cfg.causal = causal;
                c.cfg.dtype = k ? FA4CP_BF16 : FA4CP_FP64;
                c.cfg.head_dim = 32;
                c.cfg.heads = 8;
                c.cfg.kv_heads = 4;
                c.with_dlse = k;
                static const int lens[][2] = {{0, 0}, {1, 32}, {13, 32}, {16, 32}, {0, 8}};
                c.B = 5;
                c.cu[0] = 0;
                for (int i = 0; i < c.B; i++) {
                    c.used[i] = lens[i][0];
                    c.cu[i + 1] = c.cu[i] + lens[i][1];
                }
                total++;
                pass += run_case(&rng, &c);
            }
            ok(pass == total, "%s %s: empty sequences and padding-only chunks give no NaN (%d/%d)",
               fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), causal ? "causal" : "no mask", pass, total);
        }
    /* an empty batch, and a batch of empty sequences */
    for (int comm = 0; comm < 3; comm++) {
        int pass = 0;
        for (int k = 0; k < 2; k++) {
            cp_tcase c = cp_case(2, (fa4cp_cp_comm_type)comm, FA4CP_BACKEND_CPU);
            c.cfg.causal = 1;
            c.cfg.dtype = FA4CP_FP32;
            c.cfg.head_dim = 8;
            c.cfg.heads = c.cfg.kv_heads = 2;
            c.pad = k;
            c.B = k ? 2 : 0;
            c.cu[1] = k ? 4 : 0;
            c.cu[2] = k ? 8 : 0;
            pass += run_case(&rng, &c);
        }
        ok(pass == 2, "%s: an empty batch and a batch of empty sequences", fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm));
    }
    diag("largest error / tolerance: fp64 %.3g, fp32 %.3g, bf16 %.3g", worst[FA4CP_FP64], worst[FA4CP_FP32],
         worst[FA4CP_BF16]);
    return done_testing();
}
