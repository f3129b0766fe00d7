/* results.h - results.jsonl of fa4cp-run (atomic append); the records are
 * written and read with json.h.  Private to the runner tools. */
#ifndef FA4CP_RESULTS_H
#define FA4CP_RESULTS_H

#include "fa4cp.h"
#include "core/json.h"

#include <stddef.h>

/* Append one line (a '\n' is added) to DIR/results.jsonl with a single
 * O_APPEND write followed by fsync, creating DIR (and parents) if needed:
 * a job killed midway keeps every line written before. */
fa4cp_status fa4cp_results_append(const char *dir, const char *line);

#endif
