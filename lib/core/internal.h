/* internal.h - private helpers shared by the files of libfa4cp. */
#ifndef FA4CP_INTERNAL_H
#define FA4CP_INTERNAL_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fa4cp.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Record the detail of a failure for fa4cp_last_error() and return status.
 * Write it where the failure is understood: what, where, and what to do. */
fa4cp_status fa4cp_set_error(fa4cp_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
fa4cp_status fa4cp_set_errorv(fa4cp_status status, const char *fmt, va_list ap);
/* Prefix the current message with "context: " (keeps the status). */
fa4cp_status fa4cp_error_context(fa4cp_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Propagate a failure from a call that already set the message; jumps to the
 * function's single exit label `out`, with `st` holding the status. */
#define FA4CP_TRY(expr)                                                                            \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != FA4CP_OK)                                                                        \
            goto out;                                                                              \
    } while (0)

/* Fail with a message at this point (file:line go to the debug log). */
#define FA4CP_FAIL(status, ...)                                                                    \
    do {                                                                                           \
        st = fa4cp_set_error((status), __VA_ARGS__);                                               \
        fa4cp_log(FA4CP_LOG_DEBUG, "%s:%d: %s", __FILE__, __LINE__, fa4cp_last_error());           \
        goto out;                                                                                  \
    } while (0)

#define FA4CP_UNUSED(x) ((void)(x))

/* Deadlines (clock.c).  fa4cp_timeout_check: FA4CP_ERR_INVALID with "WHAT:
 * ..." unless 0 < timeout_s <= FA4CP_TIMEOUT_MAX_S (and finite).
 * fa4cp_deadline: now on `clock` plus timeout_s, saturated (NaN, negative
 * and huge values give now, resp. now + FA4CP_TIMEOUT_MAX_S), never an
 * overflowed time. */
struct timespec;
fa4cp_status fa4cp_timeout_check(const char *what, double timeout_s);
void fa4cp_deadline(int clock, double timeout_s, struct timespec *out);

#ifdef __cplusplus
}
#endif

#endif
