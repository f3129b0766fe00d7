/* test_thd.c - THD index math and the load-balanced CP partition. */
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define MAXB 16

/* Check the partition of one batch for one cp size; returns 1 when every
 * property holds (failures are reported as diagnostics). */
static int check_partition(int batch, const int32_t *cu, const int32_t *used, int cp, const char *what)
{
    int good = 1;
    int64_t total = cu[batch];
    int64_t local_total = total / cp;
    int32_t lcu[MAXB + 1], lused[MAXB], h0[MAXB], h1[MAXB], hcu[MAXB + 1];
    int64_t *owner_count = calloc((size_t)total + 1, sizeof(int64_t));
    int64_t real_seen = 0, real_want = 0;
    for (int i = 0; i < batch; i++)
        real_want += used ? used[i] : cu[i + 1] - cu[i];
    fa4cp_thd_local_cu(batch, cu, cp, -1, lcu);
    fa4cp_thd_local_cu(batch, cu, cp, 0, hcu);
    for (int r = 0; r < cp; r++) {
        fa4cp_thd_local_seqused(batch, cu, used, cp, r, -1, lused);
        fa4cp_thd_local_seqused(batch, cu, used, cp, r, 0, h0);
        fa4cp_thd_local_seqused(batch, cu, used, cp, r, 1, h1);
        for (int64_t l = 0; l < local_total; l++) {
            int64_t g = fa4cp_thd_local_to_global(batch, cu, cp, r, l);
            int rr = -1;
            int64_t ll = -1;
            if (g < 0 || g >= total || fa4cp_thd_global_to_local(batch, cu, cp, g, &rr, &ll) != FA4CP_OK ||
                rr != r || ll != l) {
                if (good)
                    diag("%s cp=%d: rank %d local %lld -> global %lld -> (%d, %lld)", what, cp, r,
                         (long long)l, (long long)g, rr, (long long)ll);
                good = 0;
                continue;
            }
            owner_count[g]++;
            /* the local sequence and its offset */
            int s = fa4cp_thd_seq_of_row(batch, lcu, l);
            int64_t off = l - lcu[s];
            int64_t chunk = (cu[s + 1] - cu[s]) / (2 * cp);
            int64_t len = used ? used[s] : cu[s + 1] - cu[s];
            int real = (g - cu[s]) < len;
            real_seen += real;
            /* prefix property: whole local sequence, and each half */
            int want_real = off < lused[s];
            int half = off < chunk ? 0 : 1;
            int64_t hoff = off % chunk;
            int want_half = hoff < (half ? h1[s] : h0[s]);
            if (real != want_real || real != want_half || hcu[s] * 2 != lcu[s]) {
                if (good)
                    diag("%s cp=%d: rank %d seq %d off %lld real %d but prefix says %d/%d", what, cp, r, s,
                         (long long)off, real, want_real, want_half);
                good = 0;
            }
        }
    }
    for (int64_t g = 0; g < total; g++)
        if (owner_count[g] != 1) {
            if (good)
                diag("%s cp=%d: global row %lld owned %lld times", what, cp, (long long)g,
                     (long long)owner_count[g]);
            good = 0;
        }
    if (real_seen != real_want) {
        diag("%s cp=%d: %lld real tokens held, %lld real tokens exist", what, cp, (long long)real_seen,
             (long long)real_want);
        good = 0;
    }
    free(owner_count);
    return good;
}

int main(void)
{
    plan(0);
    test_rng rng = test_rng_init("test_thd");
    int32_t cu[MAXB + 1], used[MAXB], out[MAXB];

    /* random batches: lengths (0 included) padded up to a multiple of 2*cp */
    for (int cp = 1; cp <= 5; cp++) {
        int all_good = 1;
        for (int trial = 0; trial < 40; trial++) {
            int batch = test_rng_int(&rng, 1, MAXB);
            cu[0] = 0;
            for (int i = 0; i < batch; i++) {
                int len = test_rng_int(&rng, 0, 3) == 0 ? 0 : test_rng_int(&rng, 1, 70);
                int padded = (len + 2 * cp - 1) / (2 * cp) * (2 * cp);
                padded += 2 * cp * test_rng_int(&rng, 0, 1); /* sometimes a whole extra round */
                used[i] = len;
                cu[i + 1] = cu[i] + padded;
            }
            if (fa4cp_thd_check(batch, cu, used, cp) != FA4CP_OK) {
                diag("check refused a valid batch: %s", fa4cp_last_error());
                all_good = 0;
            }
            all_good &= check_partition(batch, cu, used, cp, "random padded");
            all_good &= check_partition(batch, cu, NULL, cp, "random unpadded");
        }
        ok(all_good, "cp=%d: 40 random batches: each token owned once, maps inverse, real tokens a prefix", cp);
    }

    /* TE #3331: tail padding with lengths not divisible by cp; the boundary
     * rows must be labelled exactly (counts per chunk from the definition) */
    {
        int cp = 3;
        int32_t lens[] = {5, 7, 11, 1};
        int batch = 4;
        cu[0] = 0;
        for (int i = 0; i < batch; i++) {
            used[i] = lens[i];
            cu[i + 1] = cu[i] + (lens[i] + 5) / 6 * 6;
        }
        int exact = 1;
        for (int r = 0; r < cp; r++) {
            fa4cp_thd_local_seqused(batch, cu, used, cp, r, 0, out);
            for (int i = 0; i < batch; i++) {
                int chunk = (cu[i + 1] - cu[i]) / 6;
                int want = lens[i] - r * chunk;
                want = want < 0 ? 0 : want > chunk ? chunk : want;
                if (out[i] != want)
                    exact = 0;
            }
            fa4cp_thd_local_seqused(batch, cu, used, cp, r, 1, out);
            for (int i = 0; i < batch; i++) {
                int chunk = (cu[i + 1] - cu[i]) / 6;
                int want = lens[i] - (5 - r) * chunk;
                want = want < 0 ? 0 : want > chunk ? chunk : want;
                if (out[i] != want)
                    exact = 0;
            }
        }
        ok(exact, "TE issue 3331 case: per-half valid counts are exact for lengths 5,7,11,1 at cp=3");
        ok(check_partition(batch, cu, used, cp, "TE issue 3331"), "TE issue 3331 case: partition properties hold");
    }

    /* TE #2186: a rank whose second chunk is all padding */
    {
        int cp = 2;
        cu[0] = 0;
        cu[1] = 16;
        used[0] = 5; /* chunks of 4: 4,1,0,0 */
        fa4cp_thd_local_seqused(1, cu, used, cp, 0, 1, out);
        is_int(out[0], 0, "TE issue 2186 case: rank 0's second chunk (chunk 3) holds 0 real tokens");
        fa4cp_thd_local_seqused(1, cu, used, cp, 1, 0, out);
        is_int(out[0], 1, "TE issue 2186 case: rank 1's first chunk (chunk 1) holds 1 real token");
        fa4cp_thd_local_seqused(1, cu, used, cp, 1, 1, out);
        is_int(out[0], 0, "TE issue 2186 case: rank 1's second chunk (chunk 2) is all padding");
        fa4cp_thd_local_seqused(1, cu, used, cp, 0, -1, out);
        is_int(out[0], 4, "TE issue 2186 case: rank 0 holds 4 real tokens");
    }

    /* TE #1930: the last real token of a packed sequence must not be dropped */
    {
        int cp = 2;
        cu[0] = 0;
        cu[1] = 8;
        cu[2] = 16;
        used[0] = 7;
        used[1] = 8;
        int64_t held = 0;
        for (int r = 0; r < cp; r++) {
            fa4cp_thd_local_seqused(2, cu, used, cp, r, -1, out);
            held += out[0] + out[1];
        }
        is_int(held, 15, "TE issue 1930 case: all 15 real tokens (7 + 8) are held by some rank");
        int rank;
        int64_t local;
        fa4cp_thd_global_to_local(2, cu, cp, 6, &rank, &local);
        fa4cp_thd_local_seqused(2, cu, used, cp, rank, -1, out);
        int64_t off = local - cu[0] / cp;
        ok(off < out[0], "TE issue 1930 case: the last real token (row 6) is inside its rank's real prefix");
    }

    /* errors */
    cu[0] = 0;
    cu[1] = 16;
    cu[2] = 16 + 1001;
    is_int(fa4cp_thd_check(2, cu, NULL, 4), FA4CP_ERR_INVALID, "length not divisible by 2*cp is refused");
    is_string(fa4cp_last_error(),
              "sequence 1 has padded length 1001, not divisible by 2*cp = 8: pad it to 1008 (7 more rows)",
              "the refusal names the sequence and the padding it needs");
    cu[2] = 16;
    ok(fa4cp_thd_check(2, cu, NULL, 4) == FA4CP_OK, "zero-length sequences are valid");
    used[0] = 17;
    is_int(fa4cp_thd_check(1, cu, used, 1), FA4CP_ERR_INVALID, "seqused beyond the padded length is refused");
    like(fa4cp_last_error(), "sequence 0 uses 17 tokens but its padded length is 16", "seqused message");
    cu[1] = 8;
    cu[2] = 4;
    is_int(fa4cp_thd_check(2, cu, NULL, 1), FA4CP_ERR_INVALID, "decreasing cu_seqlens is refused");
    cu[0] = 3;
    is_int(fa4cp_thd_check(1, cu, NULL, 1), FA4CP_ERR_INVALID, "cu_seqlens not starting at 0 is refused");

    /* seq_of_row with zero-length sequences */
    int32_t z[] = {0, 0, 4, 4, 4, 9};
    is_int(fa4cp_thd_seq_of_row(5, z, 0), 1, "row 0 belongs to sequence 1 (sequence 0 is empty)");
    is_int(fa4cp_thd_seq_of_row(5, z, 4), 4, "row 4 belongs to sequence 4 (2 and 3 are empty)");
    is_int(fa4cp_thd_seq_of_row(5, z, 9), -1, "row 9 is past the end");
    int rr;
    int64_t ll;
    is_int(fa4cp_thd_global_to_local(5, z, 1, 9, &rr, &ll), FA4CP_ERR_INVALID, "global row past the end is refused");
    is_int(fa4cp_thd_chunk_valid(13, 16, 2, 3), 1, "chunk_valid: 13 of 16, cp=2, chunk 3 holds 1");
    is_int(fa4cp_thd_chunk_valid(0, 16, 2, 0), 0, "chunk_valid: empty sequence");
    return done_testing();
}
