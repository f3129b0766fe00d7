/* report.h - what fa4cp-report does with fa4cp-run records: read them,
 * group them into scaling series, write and render gnuplot plots, compare
 * with a baseline.  Private to fa4cp-report (compiled into it). */
#ifndef FA4CP_REPORT_H
#define FA4CP_REPORT_H

#include <stddef.h>
#include <stdio.h>

/* One usable record (status OK or BELOW GATE). */
typedef struct rep_rec {
    char comm[24], dtype[12], mask[32], backend[12], name[64], job[32];
    long long tokens;
    int heads, kv_heads, d, gpus, nodes, replicas, backward;
    int dv; /* head_dim_v (head_dim in records without it) */
    double fwd_ms, bwd_ms, fwd_tf, bwd_tf, err;
    int order; /* input order */
} rep_rec;

typedef struct rep_set {
    rep_rec *r;
    int n, cap;
    int bad;   /* lines skipped (not JSON, incomplete) */
    int files; /* files read */
} rep_set;

/* Read a results.jsonl file, or DIR/results.jsonl; -1 (and a message on
 * stderr) when it cannot be read.  Bad lines are reported with file:line and
 * skipped. */
int rep_load(rep_set *s, const char *arg);
void rep_free(rep_set *s);

/* "p2p, 1M tokens, h 32/8, d 128, bf16, causal" (weak: tokens per GPU) */
void rep_shape_label(const rep_rec *r, int weak, char *buf, size_t len);
/* 1024 -> "1k", 1048576 -> "1M" */
const char *rep_tokens(long long t, char *buf, size_t len);

/* A scaling series: the same problem (strong) or the same tokens per GPU
 * (weak), one record per (GPUs, nodes) - the last one read - sorted by GPUs. */
#define REP_MAX_POINTS 64
typedef struct rep_series {
    char key[256], label[160];
    int weak, n;
    rep_rec *r[REP_MAX_POINTS];
} rep_series;

/* The series with two or more GPU counts; *replaced counts the records that
 * a later one of the same case, GPUs and nodes replaced. */
int rep_series_build(rep_set *s, int weak, rep_series **out, int *replaced);

/* efficiency of v against the series' first (smallest) run; NaN if unknown */
double rep_eff(double v, double base);

/* Plots: DIR/KIND.dat and DIR/KIND.gp, drawing KIND-fwd, KIND-bwd (TFLOP/s
 * per GPU with each series' ideal, the smallest run's rate kept) and
 * KIND-efficiency (forward solid, backward dashed, ideal 1) as `format`
 * (svg or png).  0, or -1 with errno. */
int rep_plot_write(const char *dir, const char *kind, rep_series *s, int ns, const char *format);
/* Run `gnuplot KIND.gp` in DIR (posix_spawn, no shell).  0 ok; -1 the
 * program was not found; 1 it failed (why in err). */
int rep_plot_render(const char *dir, const char *kind, const char *gnuplot, char *err, size_t errlen);

/* Compare every case of `cur` with the same case (shape, GPUs, nodes) in
 * `base`: medians of each side's records.  Markdown to out; returns the
 * cases that are slower than the baseline by more than slow_pct percent
 * (forward or backward time) or whose max error is more than err_pct percent
 * larger; *compared gets the cases found in both. */
int rep_baseline(FILE *out, const rep_set *cur, const rep_set *base, double slow_pct, double err_pct,
                 int *compared);

#endif
