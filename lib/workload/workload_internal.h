/* workload_internal.h - the loader's shared state: the schema's types, a
 * draft case with the marks of its fields, the parse context, the sweep
 * dimensions, and the functions the stages share (schema and scalars:
 * workload_schema.c; mappings and sweeps: workload_sweep.c; resolution
 * and estimates: workload_case.c; documents and the API: workload.c). */
#ifndef FA4CP_WORKLOAD_INTERNAL_H
#define FA4CP_WORKLOAD_INTERNAL_H

#include "core/internal.h"
#include "cp/cp_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_CASES 4096        /* per YAML document, after the sweep */
#define MAX_SEQS 65536        /* sequences per case */
#define MAX_CASE_SEQS 4000000 /* sequences over all the cases of a file */
#define MAX_HEADS 4096
#define MAX_HEAD_DIM FA4CP_HEAD_DIM_MAX
#define MAX_CP 65536
/* A hostile file is refused before libyaml builds it (libyaml's scanner is
 * quadratic in the nesting: 100k nested '[' took 60 s to fail).  A workload
 * is 4 levels deep and a few KiB; the caps leave room for long lists. */
#define MAX_FILE_BYTES (4u << 20) /* 4 MiB */
#define MAX_DEPTH 32              /* nested mappings and sequences */
#define PATHLEN 128


enum field_id {
    F_HEADS, F_KV_HEADS, F_HEAD_DIM, F_HEAD_DIM_V, F_DTYPE, F_CAUSAL, F_WINDOW, F_LAYOUT, F_SEQUENCES,
    F_SEQ_COUNT, F_SEQ_TOTAL, F_SEQ_DIST, F_SEQ_MIN, F_SEQ_MULT, F_PAD,
    F_CP_SIZE, F_CP_COMM,
    F_BACKEND, F_WARMUP, F_ITERS, F_BACKWARD, F_CHECK, F_SAMPLES, F_SEED, F_TIMEOUT,
    F_GATE_FWD, F_GATE_BWD,
    NFIELD
};

#define NFIELDS ((int)NFIELD)

enum kind { K_INT, K_TOKENS, K_BOOL, K_DOUBLE, K_U64, K_ENUM, K_WINDOW, K_SEQUENCES, K_DTYPE };

typedef struct field {
    const char *path;
    enum field_id id;
    enum kind kind;
    long long min, max;     /* K_INT / K_TOKENS */
    const char *const *names; /* K_ENUM: NULL-terminated */
} field;


typedef struct mark {
    int set;
    const char *file; /* the workload file, or "command line" */
    int line, col; /* 1-based */
    char path[PATHLEN];
} mark;

typedef struct draft {
    fa4cp_case c;
    int32_t *list; /* explicit lengths */
    int nlist;
    int gen_count;
    mark m[NFIELD];
} draft;

typedef struct ctx {
    const char *file;
    yaml_document_t *doc;
} ctx;

struct fa4cp_workload {
    char *file;
    int n, cap;
    fa4cp_case *cases;
};

#define MAX_DIM_KEYS 8
typedef struct dim {
    int nkeys;
    const field *f[MAX_DIM_KEYS];
    char path[MAX_DIM_KEYS][PATHLEN];
    yaml_node_t *list[MAX_DIM_KEYS];
    int nvalues;
} dim;

#define MAX_DIMS 16

/* workload_schema.c */
const field *wl_field_by_path(const char *path);
const char *wl_nearest(const char *word, const char *const *cand, int ncand);
extern const char *const wl_top_keys[];
int wl_parse_ll(const char *s, long long *out);
extern const field wl_fields[]; /* [NFIELDS], one row per field_id */
fa4cp_status wl_nerr(const ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
fa4cp_status wl_merr(const char *file, const mark *m, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *wl_node_kind(const yaml_node_t *n);
const char *wl_scalar(const yaml_node_t *n);
fa4cp_status wl_set_field(const ctx *x, draft *d, const field *f, yaml_node_t *n, const char *path);

/* workload_sweep.c */
fa4cp_status wl_load_sweep(const ctx *x, yaml_node_t *map, dim *dims, int *ndims);
const char *wl_leaf_home(const char *leaf);
void wl_node_text(yaml_document_t *doc, yaml_node_t *n, char *buf, size_t len);
fa4cp_status wl_check_dups(const ctx *x, yaml_node_t *map, const char *path);
fa4cp_status wl_load_section(const ctx *x, draft *d, const char *section, yaml_node_t *map);

/* workload_case.c */
fa4cp_status wl_finalize(const char *file, draft *d, int ncases_seqs_left);

#endif
