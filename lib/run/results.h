/* results.h - JSON lines of fa4cp-run (writer, atomic append) and a small
 * JSON reader for fa4cp-report and the tests.  Private to the runner tools. */
#ifndef FA4CP_RESULTS_H
#define FA4CP_RESULTS_H

#include "fa4cp.h"

#include <stddef.h>

/* ---- writer: one JSON object built in memory */
typedef struct fa4cp_jw {
    char *buf;
    size_t len, cap;
    int depth;
    int first[32]; /* no comma needed yet at this depth */
    int failed;    /* out of memory */
} fa4cp_jw;

void fa4cp_jw_init(fa4cp_jw *w);
void fa4cp_jw_free(fa4cp_jw *w);
/* key NULL inside arrays and at the top */
void fa4cp_jw_begin(fa4cp_jw *w, const char *key, int array);
void fa4cp_jw_end(fa4cp_jw *w, int array);
void fa4cp_jw_str(fa4cp_jw *w, const char *key, const char *value);
void fa4cp_jw_num(fa4cp_jw *w, const char *key, double value); /* NaN/inf -> null */
void fa4cp_jw_int(fa4cp_jw *w, const char *key, long long value);
void fa4cp_jw_bool(fa4cp_jw *w, const char *key, int value);
void fa4cp_jw_null(fa4cp_jw *w, const char *key);

/* Append one line (a '\n' is added) to DIR/results.jsonl with a single
 * O_APPEND write followed by fsync, creating DIR (and parents) if needed:
 * a job killed midway keeps every line written before. */
fa4cp_status fa4cp_results_append(const char *dir, const char *line);

/* ---- reader */
enum { FA4CP_JV_NULL, FA4CP_JV_BOOL, FA4CP_JV_NUM, FA4CP_JV_STR, FA4CP_JV_ARR, FA4CP_JV_OBJ };
typedef struct fa4cp_jv {
    int type;
    double num;  /* NUM, BOOL */
    char *str;   /* STR */
    int n;       /* ARR, OBJ: items */
    struct fa4cp_jv *items;
    char **keys; /* OBJ */
} fa4cp_jv;

/* NULL on a syntax error (err gets "offset N: what"). */
fa4cp_jv *fa4cp_json_parse(const char *text, char *err, size_t errlen);
void fa4cp_json_free(fa4cp_jv *v);
/* Member by dotted path ("result.fwd_ms"); NULL when absent. */
const fa4cp_jv *fa4cp_json_get(const fa4cp_jv *v, const char *path);
double fa4cp_json_num(const fa4cp_jv *v, const char *path, double dflt);
const char *fa4cp_json_str(const fa4cp_jv *v, const char *path, const char *dflt);

#endif
