/* results.h - results.jsonl of fa4cp-run (atomic append); the records are
 * written and read with json.h.  Private to the runner tools. */
#ifndef FA4CP_RESULTS_H
#define FA4CP_RESULTS_H

#include "fa4cp.h"
#include "core/json.h"

#include <stddef.h>

/* Before the first case: DIR is created (with parents) and is a directory,
 * DIR/results.jsonl is (or is created as) a regular file this process can
 * append to, and its file system has room (1 MiB).  FA4CP_ERR_IO with the
 * reason otherwise ("-o \"\"", a file, /dev/null, a directory or a device
 * named results.jsonl, no permission, no room, a path too long). */
fa4cp_status fa4cp_results_prepare(const char *dir);

/* Append one line (a '\n' is added) to DIR/results.jsonl with a single
 * O_APPEND write followed by fsync, creating DIR (and parents) if needed:
 * a job killed midway keeps every line written before.  The line starts
 * fresh (a newline first when the file ends in a torn line); a short write
 * is cut back off and is an error. */
fa4cp_status fa4cp_results_append(const char *dir, const char *line);

/* Reading results.jsonl, bounded: a line is at most FA4CP_RESULTS_MAX_LINE
 * bytes (longer, or NUL bytes: not a results file, the rest is skipped). */
#define FA4CP_RESULTS_MAX_LINE (16u << 20)

typedef struct fa4cp_results_reader fa4cp_results_reader;
typedef struct fa4cp_results_counts {
    long records;    /* records returned */
    long torn;       /* torn lines skipped (a cut-off write) */
    long not_json;   /* other lines that are not records */
    long unreadable; /* 1 when the rest of the file was given up */
} fa4cp_results_counts;
/* Told of every line skipped (path, line number, why). */
typedef void (*fa4cp_results_skip_fn)(void *ctx, const char *path, long line, const char *why);

/* Open FILE, or DIR/results.jsonl when given a directory. */
fa4cp_status fa4cp_results_open(const char *path_or_dir, fa4cp_results_skip_fn skip, void *ctx,
                                fa4cp_results_reader **out);
/* The next record (an object; free it with fa4cp_json_free) and its line
 * number; *rec NULL at the end.  What is not a record is skipped, counted
 * and told to skip(). */
fa4cp_status fa4cp_results_next(fa4cp_results_reader *r, json_t **rec, long *lineno);
const char *fa4cp_results_path(const fa4cp_results_reader *r);
const fa4cp_results_counts *fa4cp_results_counted(const fa4cp_results_reader *r);
void fa4cp_results_close(fa4cp_results_reader *r);

#endif
