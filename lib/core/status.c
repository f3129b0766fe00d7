/* status.c - status names and the per-thread last-error message. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define ERRBUF 1024

static _Thread_local char last_error[ERRBUF];

const char *fa4cp_strerror(fa4cp_status status)
{
    switch (status) {
    case FA4CP_OK: return "success";
    case FA4CP_ERR_INVALID: return "invalid argument";
    case FA4CP_ERR_UNSUPPORTED: return "not supported";
    case FA4CP_ERR_NOMEM: return "out of memory";
    case FA4CP_ERR_CUDA: return "CUDA error";
    case FA4CP_ERR_NCCL: return "NCCL error";
    case FA4CP_ERR_PMIX: return "PMIx error";
    case FA4CP_ERR_TIMEOUT: return "timed out";
    case FA4CP_ERR_IO: return "I/O error";
    case FA4CP_ERR_LAUNCH: return "wrong launch";
    case FA4CP_ERR_PEER: return "peer failed";
    case FA4CP_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *fa4cp_last_error(void) { return last_error; }

void fa4cp_clear_error(void) { last_error[0] = '\0'; }

fa4cp_status fa4cp_set_errorv(fa4cp_status status, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return status;
}

fa4cp_status fa4cp_set_error(fa4cp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fa4cp_set_errorv(status, fmt, ap);
    va_end(ap);
    return status;
}

fa4cp_status fa4cp_error_context(fa4cp_status status, const char *fmt, ...)
{
    char old[ERRBUF];
    va_list ap;
    memcpy(old, last_error, sizeof old);
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    /* append ": " and the old message, truncating at the buffer's end */
    const char *tail = old[0] ? old : fa4cp_strerror(status);
    size_t at = (size_t)n < sizeof last_error ? (size_t)n : sizeof last_error - 1;
    const char *parts[2] = {": ", tail};
    for (int p = 0; p < 2; p++)
        for (const char *c = parts[p]; *c && at + 1 < sizeof last_error; c++)
            last_error[at++] = *c;
    last_error[at] = '\0';
    return status;
}

const char *fa4cp_version(void) { return PACKAGE_VERSION; }
