/* tap.h - a small TAP producer for the test programs (Test Anything Protocol). */
#ifndef FA4CP_TAP_H
#define FA4CP_TAP_H

#include <stdarg.h>

#if defined(__GNUC__)
#define TAP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TAP_PRINTF(a, b)
#endif

/* Announce n tests (plan(0) = decide at the end with done_testing()). */
void plan(int n);
/* Print the plan for the tests run so far and return the exit status. */
int done_testing(void);
/* Skip the whole program: "1..0 # SKIP reason", exit 0. */
void skip_all(const char *fmt, ...) TAP_PRINTF(1, 2);
/* Stop everything: "Bail out! reason", exit 255. */
void bail(const char *fmt, ...) TAP_PRINTF(1, 2);

/* Each returns its verdict (1 pass, 0 fail). */
int ok(int cond, const char *fmt, ...) TAP_PRINTF(2, 3);
int is_int(long long got, long long want, const char *fmt, ...) TAP_PRINTF(3, 4);
int is_string(const char *got, const char *want, const char *fmt, ...) TAP_PRINTF(3, 4);
/* Passes when want appears in got. */
int like(const char *got, const char *want, const char *fmt, ...) TAP_PRINTF(3, 4);
/* |got - want| <= tol; NaN never passes. */
int is_double(double got, double want, double tol, const char *fmt, ...) TAP_PRINTF(4, 5);
/* Skip n tests with a reason. */
void skip(int n, const char *fmt, ...) TAP_PRINTF(2, 3);
void diag(const char *fmt, ...) TAP_PRINTF(1, 2);

/* Number of failed tests so far. */
int tap_failures(void);

#endif
