/* test_workload.c - good workloads: defaults, sweeps (cross product and
 * together), documents, overrides, token suffixes, the length generator,
 * FLOP and memory estimates. */
#include "fa4cp.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fa4cp_workload *load(const char *text, const fa4cp_override *ov, int nov)
{
    fa4cp_workload *w = NULL;
    if (fa4cp_workload_load_buffer("test.yaml", text, strlen(text), ov, nov, &w)) {
        diag("load failed: %s", fa4cp_last_error());
        return NULL;
    }
    return w;
}

#define BASE "version: 1\nattention: {heads: 8, kv_heads: 4, head_dim: 64, sequences: [256, 128]}\n" \
             "run: {backend: cpu}\n"

int main(void)
{
    plan(0);
    int64_t t;
    ok(fa4cp_parse_tokens("128k", &t) == FA4CP_OK && t == 131072, "128k = 131072");
    ok(fa4cp_parse_tokens("1M", &t) == FA4CP_OK && t == 1048576, "1M = 1048576");
    ok(fa4cp_parse_tokens("2G", &t) == FA4CP_OK && t == 2147483648LL, "2G");
    ok(fa4cp_parse_tokens("4096", &t) == FA4CP_OK && t == 4096, "plain integer");
    ok(fa4cp_parse_tokens("1.5k", &t) != FA4CP_OK, "1.5k refused");
    ok(fa4cp_parse_tokens("12kb", &t) != FA4CP_OK, "12kb refused");

    /* defaults */
    fa4cp_workload *w = load(BASE, NULL, 0);
    ok(w && fa4cp_workload_count(w) == 1, "one case without a sweep");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        ok(c->cp == 1 && c->comm == FA4CP_CP_P2P && c->dtype == FA4CP_BF16 && c->causal == 1 &&
               c->check == FA4CP_CHECK_SAMPLED && c->iters == 10 && c->warmup == 2 && c->backward == 1,
           "defaults: cp 1 p2p bf16 causal sampled iters 10 warmup 2 backward");
        ok(c->batch == 2 && c->tokens == 384 && c->padded_tokens == 384 && c->max_seqlen == 256, "lengths");
        ok(!strcmp(c->name, "test"), "name defaults to the file's base name (%s)", c->name);
        is_int(c->head_dim_v, 64, "head_dim_v defaults to head_dim");
        double f, b;
        fa4cp_case_flops(c, &f, &b);
        double pairs = 256.0 * 257 / 2 + 128.0 * 129 / 2;
        is_double(f, 4 * pairs * 64 * 8, 1e-6, "causal forward FLOPs = 4 d h * visible pairs");
        is_double(b, 2.5 * f, 1e-6, "backward = 2.5 x forward");
        fa4cp_workload_free(w);
    }

    /* the case as the CP library's config (fa4cp_case_cp_config) */
    w = load("version: 1\nattention: {heads: 8, kv_heads: 2, head_dim: 32, causal: false, window: [16, 0], "
             "sequences: [256, 128]}\nrun: {backend: cpu}\ncp: {size: 2, comm: all_gather}\n", NULL, 0);
    ok(w != NULL, "a case with a window and GQA loads");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        fa4cp_cp_config cfg;
        memset(&cfg, 0x5a, sizeof cfg);
        ok(fa4cp_case_cp_config(c, &cfg) == FA4CP_OK && cfg.struct_size == sizeof cfg &&
               cfg.comm == FA4CP_CP_ALL_GATHER && cfg.backend == FA4CP_BACKEND_CPU && cfg.format == FA4CP_CP_THD &&
               cfg.dtype == c->dtype && cfg.heads == 8 && cfg.kv_heads == 2 && cfg.head_dim == 32 && !cfg.causal &&
               cfg.window_left == 16 && cfg.window_right == 0 && cfg.softmax_scale == 0 && !cfg.deterministic,
           "fa4cp_case_cp_config: every field from the case, the rest from FA4CP_CP_CONFIG_INIT");
        ok(fa4cp_case_cp_config(NULL, &cfg) == FA4CP_ERR_INVALID, "fa4cp_case_cp_config(NULL) refused");
        fa4cp_workload_free(w);
    }

    /* cross product, last key fastest, labels */
    w = load(BASE "cp: {size: 2}\nsweep:\n  cp.comm: [p2p, all_gather, a2a]\n  attention.causal: [true, false]\n", NULL, 0);
    ok(w && fa4cp_workload_count(w) == 6, "3 x 2 sweep gives 6 cases");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 3);
        ok(c->comm == FA4CP_CP_ALL_GATHER && c->causal == 0, "case 3 = all_gather, not causal");
        is_string(c->label, "cp.comm=all_gather attention.causal=false", "label of case 3");
        ok(c->index == 3 && c->doc == 1, "index and document");
        fa4cp_workload_free(w);
    }
    {
        /* issue 15, finding 12: a --set of a swept key shows in the label */
        fa4cp_override so[] = {{"cp.comm", "a2a"}, {"causal", "true"}};
        w = load(BASE "cp: {size: 2}\nsweep:\n  cp.comm: [p2p, all_gather, a2a]\n  attention.causal: [true, false]\n",
                 so, 2);
        int good = w && fa4cp_workload_count(w) == 6;
        for (int i = 0; good && i < 6; i++) {
            const fa4cp_case *c = fa4cp_workload_get(w, i);
            good = c->comm == FA4CP_CP_A2A && c->causal && !strcmp(c->label, "cp.comm=a2a attention.causal=true");
            if (!good)
                diag("case %d: label '%s'", i, c->label);
        }
        ok(good, "--set cp.comm=a2a --set causal=true: every case runs a2a, causal and its label says so");
        fa4cp_workload_free(w);
    }

    /* together: keys vary in step; bare leaf names are accepted */
    w = load(BASE "sweep:\n  cp.comm: [p2p, all_gather]\n  together:\n    cp.size: [1, 2, 4]\n"
                  "    sequences: [[256], [512], [1k]]\n",
             NULL, 0);
    ok(w && fa4cp_workload_count(w) == 6, "2 x together(3) = 6 cases");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 2);
        ok(c->cp == 4 && c->tokens == 1024 && c->comm == FA4CP_CP_P2P, "case 2: p2p cp 4 with 1k tokens");
        c = fa4cp_workload_get(w, 4);
        ok(c->cp == 2 && c->tokens == 512 && c->comm == FA4CP_CP_ALL_GATHER, "case 4: all_gather cp 2 512 tokens");
        fa4cp_workload_free(w);
    }

    /* a list of together groups, several documents */
    w = load(BASE "sweep:\n  together:\n    - {cp.size: [1, 2], attention.heads: [8, 16]}\n"
                  "    - {run.iters: [3, 4, 5], run.seed: [1, 2, 3]}\n---\n" BASE "name: second\n",
             NULL, 0);
    ok(w && fa4cp_workload_count(w) == 7, "2 x 3 + 1 cases over two documents");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 5);
        ok(c->cp == 2 && c->heads == 16 && c->iters == 5 && c->seed == 3, "case 5 of the groups");
        c = fa4cp_workload_get(w, 6);
        ok(c->doc == 2 && !strcmp(c->name, "second") && c->index == 6, "document 2 named 'second'");
        fa4cp_workload_free(w);
    }

    /* a name is any text without control characters: non-ASCII and quotes stay */
    w = load(BASE "name: \"caf\\u00e9 \\\"q\\\" \\u2713 \\U0001F600\"\n", NULL, 0);
    ok(w && !strcmp(fa4cp_workload_get(w, 0)->name, "caf\xc3\xa9 \"q\" \xe2\x9c\x93 \xf0\x9f\x98\x80"),
       "a name with non-ASCII (escaped in YAML) and quotes: %s", w ? fa4cp_workload_get(w, 0)->name : "-");
    fa4cp_workload_free(w);

    /* overrides win over the document and the sweep; YAML values */
    fa4cp_override ov[] = {{"run.iters", "7"}, {"cp.size", "2"}, {"attention.sequences", "[64, 64k]"}, {"check", "full"}};
    w = load(BASE "sweep:\n  cp.size: [4, 8]\n", ov, 4);
    ok(w && fa4cp_workload_count(w) == 2, "override keeps the number of cases");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 1);
        ok(c->iters == 7 && c->cp == 2 && c->tokens == 64 + 65536 && c->check == FA4CP_CHECK_FULL,
           "overrides applied after the sweep");
        fa4cp_workload_free(w);
    }
    fa4cp_override bad[] = {{"run.itres", "7"}};
    ok(load(BASE, bad, 1) == NULL && strstr(fa4cp_last_error(), "did you mean 'run.iters'"),
       "an unknown override key gets a suggestion");

    /* padding: lengths rounded up per sequence to 2*cp; real lengths kept */
    w = load("version: 1\nattention: {heads: 4, head_dim: 16, sequences: [203, 61, 120], pad_between_seqs: true}\n"
             "cp: {size: 4}\n",
             NULL, 0);
    ok(w != NULL, "padded THD loads");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        ok(c->cu_padded[1] == 208 && c->cu_padded[2] == 272 && c->cu_padded[3] == 392 && c->tokens == 384,
           "cu_padded 0/208/272/392 for 384 real tokens");
        ok(c->cu_tokens[2] == 264, "logical token offsets");
        fa4cp_workload_free(w);
    }

    /* generator: deterministic, sums to total, multiples, min */
    const char *gen = "version: 1\nattention: {heads: 4, head_dim: 16, sequences: {count: 7, total: 1M, distribution: "
                      "lognormal, multiple_of: 256, min: 1k}}\ncp: {size: 8}\nrun: {seed: 9}\n";
    w = load(gen, NULL, 0);
    fa4cp_workload *w2 = load(gen, NULL, 0);
    ok(w && w2, "generator workload loads");
    if (w && w2) {
        const fa4cp_case *a = fa4cp_workload_get(w, 0), *b = fa4cp_workload_get(w2, 0);
        int64_t sum = 0;
        int good = a->batch == 7, same = 1, distinct = 0;
        for (int i = 0; i < a->batch; i++) {
            sum += a->seqlen[i];
            good &= a->seqlen[i] % 256 == 0 && a->seqlen[i] >= 1024;
            same &= a->seqlen[i] == b->seqlen[i];
            distinct |= a->seqlen[i] != a->seqlen[0];
        }
        ok(good && sum == 1048576, "7 lengths, multiples of 256, >= 1k, summing to 1M");
        ok(same, "the same seed gives the same lengths");
        ok(distinct, "lognormal lengths differ");
    }
    fa4cp_workload_free(w);
    fa4cp_workload_free(w2);

    /* equal distribution, window, bshd */
    w = load("version: 1\nattention: {heads: 4, head_dim: 16, layout: bshd, window: [32, 0], causal: false,\n"
             "  sequences: {count: 4, total: 4k}}\ncp: {size: 2, comm: all_gather}\n",
             NULL, 0);
    ok(w != NULL, "bshd with a window on all_gather loads");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        ok(c->batch == 4 && c->seqlen[3] == 1024 && c->layout_bshd && c->window_left == 32 && c->window_right == 0,
           "4 x 1024, bshd, window [32, 0]");
        double f;
        fa4cp_case_flops(c, &f, NULL);
        /* each row sees up to 33 keys (itself and 32 before) */
        double pairs = 4 * (33.0 * 1024 - 32.0 * 33 / 2);
        is_double(f, 4 * pairs * 16 * 4, 1e-6, "windowed FLOPs");
        ok(fa4cp_case_fit_world(c, 4) == FA4CP_OK, "fits 4 ranks");
        ok(fa4cp_case_fit_world(c, 3) != FA4CP_OK && strstr(fa4cp_last_error(), "not a multiple of cp.size = 2"),
           "3 ranks refused");
        ok(fa4cp_case_fit_world(c, 1) != FA4CP_OK && strstr(fa4cp_last_error(), "needs cp.size = 2 ranks"),
           "1 rank refused");
        size_t need = fa4cp_case_memory(c, 1);
        ok(need > 0, "memory estimate %zu bytes", need);
        ok(fa4cp_case_check_memory(c, need, need - 1, "GPU 0") == FA4CP_ERR_NOMEM &&
               strstr(fa4cp_last_error(), "GiB per rank but GPU 0 has"),
           "memory check names both numbers: %s", fa4cp_last_error());
        fa4cp_workload_free(w);
    }

    /* head_dim_v: MLA's 192/128, in the CP config, the FLOPs 2*B*H*S*Sk*(d+dv)
     * (FlashAttention's count), the memory estimate, sweeps and --set */
    w = load("version: 1\nattention: {heads: 8, kv_heads: 2, head_dim: 192, head_dim_v: 128, causal: false,\n"
             "  sequences: [256, 128]}\nrun: {backend: cpu}\ncp: {size: 2, comm: a2a}\n",
             NULL, 0);
    ok(w != NULL, "a case with head_dim 192, head_dim_v 128 loads");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        ok(c->head_dim == 192 && c->head_dim_v == 128, "head_dim 192, head_dim_v 128");
        fa4cp_cp_config cfg;
        ok(fa4cp_case_cp_config(c, &cfg) == FA4CP_OK && cfg.head_dim == 192 && cfg.head_dim_v == 128,
           "the CP config takes both head dims");
        double f, b;
        fa4cp_case_flops(c, &f, &b);
        is_double(f, 2.0 * 8 * (256.0 * 256 + 128.0 * 128) * (192 + 128), 1e-6, "FLOPs = 2 H S Sk (d + dv)");
        is_double(b, 2.5 * f, 1e-6, "backward = 2.5 x forward");
        size_t mla = fa4cp_case_memory(c, 1);
        fa4cp_workload *wide_w = load("version: 1\nattention: {heads: 8, kv_heads: 2, head_dim: 192, causal: false,\n"
                                  "  sequences: [256, 128]}\nrun: {backend: cpu}\ncp: {size: 2, comm: a2a}\n",
                                  NULL, 0);
        const fa4cp_case *c2 = wide_w ? fa4cp_workload_get(wide_w, 0) : NULL;
        size_t wide = c2 ? fa4cp_case_memory(c2, 1) : 0;
        /* v, out, dout, dv: 64 columns fewer over (8 + 2) heads, forward and backward, 192 rows per rank */
        ok(c2 && c2->head_dim_v == 192 && mla + 2 * 192 * 10 * 64 * 2 <= wide,
           "the memory estimate counts v, out, dout and dv at head_dim_v (%zu < %zu bytes)", mla, wide);
        fa4cp_workload_free(wide_w);
        fa4cp_workload_free(w);
    }
    w = load("version: 1\nattention: {heads: 4, head_dim: 192, sequences: [64]}\nrun: {backend: cpu}\n"
             "sweep:\n  attention.head_dim_v: [64, 128, 192]\n  together:\n    attention.head_dim: [64, 96]\n"
             "    attention.head_dim_v: [32, 96]\n",
             NULL, 0);
    ok(w == NULL, "sweeping attention.head_dim_v both alone and in 'together' is refused");
    w = load("version: 1\nattention: {heads: 4, head_dim: 192, sequences: [64]}\nrun: {backend: cpu}\n"
             "sweep:\n  attention.head_dim_v: [64, 128]\n  together:\n    attention.head_dim: [64, 96]\n"
             "    attention.kv_heads: [4, 2]\n",
             NULL, 0);
    ok(w && fa4cp_workload_count(w) == 4, "a sweep over attention.head_dim_v (x a together sweep): 4 cases");
    if (w) {
        const fa4cp_case *c = fa4cp_workload_get(w, 3);
        ok(c->head_dim_v == 128 && c->head_dim == 96 && c->kv_heads == 2, "case 3: head_dim_v 128, head_dim 96");
        like(c->label, "attention.head_dim_v=128", "its label names head_dim_v (%s)", c->label);
        fa4cp_workload_free(w);
    }
    {
        fa4cp_override set32[] = {{"attention.head_dim_v", "32"}};
        w = load(BASE, set32, 1);
        ok(w && fa4cp_workload_get(w, 0)->head_dim_v == 32 && fa4cp_workload_get(w, 0)->head_dim == 64,
           "--set attention.head_dim_v=32");
        fa4cp_workload_free(w);
        fa4cp_override setneg[] = {{"attention.head_dim_v", "-1"}};
        w = NULL;
        ok(fa4cp_workload_load_buffer("test.yaml", BASE, strlen(BASE), setneg, 1, &w) == FA4CP_ERR_INVALID && !w,
           "--set attention.head_dim_v=-1 is refused");
        like(fa4cp_last_error(), "attention.head_dim_v: must be positive, got -1", "... naming the key");
    }

    /* jobs/ files in the source tree all load */
    const char *src = getenv("top_srcdir");
    const char *jobs[] = {"smoke", "acceptance", "weak-scaling", "strong-scaling", "kernel"};
    for (int i = 0; i < 5; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/jobs/%s.yaml", src ? src : ".", jobs[i]);
        fa4cp_workload *j = NULL;
        fa4cp_status st = fa4cp_workload_load(p, NULL, 0, &j);
        ok(st == FA4CP_OK && fa4cp_workload_count(j) > 0, "jobs/%s.yaml loads (%d cases)%s%s", jobs[i],
           fa4cp_workload_count(j), st ? ": " : "", st ? fa4cp_last_error() : "");
        fa4cp_workload_free(j);
    }

    /* issue 15, finding 9: size and nesting caps, with a clear error */
    {
        size_t big = 200000;
        char *deep = malloc(big + 1);
        memset(deep, '[', big);
        deep[big] = 0;
        fa4cp_workload *j = NULL;
        ok(fa4cp_workload_load_buffer("deep.yaml", deep, big, NULL, 0, &j) == FA4CP_ERR_INVALID && !j,
           "200 KB of nested '[' is refused");
        like(fa4cp_last_error(), "deep.yaml:1:33: nested deeper than 32 levels", "... at the level too deep");
        fa4cp_override o = {"attention.sequences", deep};
        deep[50000] = 0;
        ok(fa4cp_workload_load_buffer("test.yaml", BASE, strlen(BASE), &o, 1, &j) == FA4CP_ERR_INVALID && !j,
           "... and so is --set with 50000 nested '['");
        like(fa4cp_last_error(), "command line:1:33: nested deeper than 32 levels", "... saying so");
        /* 32 levels are taken (the error is then about the value, not the depth) */
        memset(deep, 0, 64);
        memset(deep, '[', 31);
        memset(deep + 31, ']', 31);
        ok(fa4cp_workload_load_buffer("test.yaml", BASE, strlen(BASE), &o, 1, &j) == FA4CP_ERR_INVALID &&
               !strstr(fa4cp_last_error(), "nested deeper"),
           "31 nested lists in a --set value are parsed (and refused for what they are: %s)", fa4cp_last_error());
        free(deep);
        /* size: a valid workload padded with comments past 4 MiB */
        size_t n = (4u << 20) + 10;
        char *pad = malloc(n + 1);
        memset(pad, '#', n);
        memcpy(pad, BASE, strlen(BASE));
        pad[n] = 0;
        ok(fa4cp_workload_load_buffer("pad.yaml", pad, n, NULL, 0, &j) == FA4CP_ERR_INVALID && !j,
           "a workload of 4 MiB + 10 bytes is refused");
        like(fa4cp_last_error(), "pad.yaml: 4194314 bytes: a workload file is at most 4 MiB", "... with the cap");
        n = 1u << 20;
        memset(pad + strlen(BASE), ' ', n - strlen(BASE));
        pad[n - 1] = '\n';
        ok(fa4cp_workload_load_buffer("pad.yaml", pad, n, NULL, 0, &j) == FA4CP_OK && fa4cp_workload_count(j) == 1,
           "a 1 MiB workload loads");
        fa4cp_workload_free(j);
        free(pad);
    }
    return done_testing();
}
