/* json.h - the one JSON writer and reader of fa4cp, over jansson.
 *
 * Results records (fa4cp-run), the layout (fa4cp-layout --json) and the
 * report (fa4cp-report) all go through these functions; jansson does every
 * escape and every validation (UTF-8, control characters, "\u" escapes,
 * surrogate pairs, NUL).  Private to the library and its tools. */
#ifndef FA4CP_JSON_H
#define FA4CP_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Numbers are written with 9 significant digits (timings, rates, errors). */
#define FA4CP_JSON_REAL JSON_REAL_PRECISION(9)

/* ---- writer: one JSON document built as a tree, serialized on its last end */
typedef struct fa4cp_jw {
    json_t *stack[32]; /* open containers; stack[0] is the root */
    int depth;
    char *buf;         /* the finished document on one line (after the root's end) */
    int failed;        /* out of memory or misuse; error says which */
    int replaced;      /* strings that were not valid UTF-8 (bytes -> U+FFFD) */
    char error[160];
} fa4cp_jw;

void fa4cp_jw_init(fa4cp_jw *w);
void fa4cp_jw_free(fa4cp_jw *w);
/* key NULL inside arrays and at the top */
void fa4cp_jw_begin(fa4cp_jw *w, const char *key, int array);
void fa4cp_jw_end(fa4cp_jw *w, int array);
/* A string that is not valid UTF-8 is kept with each bad byte replaced by
 * U+FFFD (and w->replaced counts it): a record is never lost to one odd
 * byte of a path or an environment variable. */
void fa4cp_jw_str(fa4cp_jw *w, const char *key, const char *value);
void fa4cp_jw_num(fa4cp_jw *w, const char *key, double value); /* NaN/inf -> null */
void fa4cp_jw_int(fa4cp_jw *w, const char *key, long long value);
void fa4cp_jw_bool(fa4cp_jw *w, const char *key, int value);
void fa4cp_jw_null(fa4cp_jw *w, const char *key);
/* Put an already built value (reference stolen). */
void fa4cp_jw_value(fa4cp_jw *w, const char *key, json_t *value);

/* A JSON string from bytes that may not be valid UTF-8 (see fa4cp_jw_str);
 * *replaced (may be NULL) is set when a byte had to be replaced. */
json_t *fa4cp_json_string_lossy(const char *s, int *replaced);

/* ---- reader */
/* NULL on a syntax error; err gets "line L, column C: what". */
json_t *fa4cp_json_parse(const char *text, char *err, size_t errlen);
void fa4cp_json_free(json_t *v);
/* Member by dotted path ("result.fwd_ms"); NULL when absent. */
const json_t *fa4cp_json_get(const json_t *v, const char *path);
/* numbers and booleans read as double; dflt when absent or of another type */
double fa4cp_json_num(const json_t *v, const char *path, double dflt);
const char *fa4cp_json_str(const json_t *v, const char *path, const char *dflt);

/* ---- printing */
/* A document for people and line tools: an object with one member per line,
 * and arrays of objects with one element per line; every value itself is
 * written by jansson (", " and ": " separators).  malloc'd, ends in '\n';
 * NULL when out of memory. */
char *fa4cp_json_rows(const json_t *doc);

#endif
