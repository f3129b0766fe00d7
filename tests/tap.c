/* tap.c - TAP output for the test programs. */
#include "tap.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int planned = -1, run = 0, failed = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void plan(int n)
{
    planned = n;
    if (n > 0)
        printf("1..%d\n", n);
    fflush(stdout);
}

int done_testing(void)
{
    if (planned <= 0)
        printf("1..%d\n", run);
    else if (planned != run)
        printf("# planned %d tests but ran %d\n", planned, run);
    fflush(stdout);
    return failed || (planned > 0 && planned != run) ? 1 : 0;
}

int tap_failures(void) { return failed; }

static void vline(const char *prefix, const char *fmt, va_list ap)
{
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* one line per message: TAP descriptions must not span lines */
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    printf("%s%s\n", prefix, buf);
}

void skip_all(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("1..0 # SKIP ", fmt, ap);
    va_end(ap);
    fflush(stdout);
    exit(0);
}

void bail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("Bail out! ", fmt, ap);
    va_end(ap);
    fflush(stdout);
    exit(255);
}

void diag(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&lock);
    va_start(ap, fmt);
    vline("# ", fmt, ap);
    va_end(ap);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
}

static int vok(int cond, const char *fmt, va_list ap)
{
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '#')
            *p = ' ';
    pthread_mutex_lock(&lock);
    run++;
    if (!cond)
        failed++;
    printf("%sok %d - %s\n", cond ? "" : "not ", run, buf);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
    return cond ? 1 : 0;
}

int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vok(cond, fmt, ap);
    va_end(ap);
    return r;
}

int is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vok(got == want, fmt, ap);
    va_end(ap);
    if (!r)
        diag("     got: %lld\n#     expected: %lld", got, want);
    return r;
}

int is_string(const char *got, const char *want, const char *fmt, ...)
{
    int same = got && want && strcmp(got, want) == 0;
    va_list ap;
    va_start(ap, fmt);
    int r = vok(same, fmt, ap);
    va_end(ap);
    if (!r)
        diag("     got: '%s'   expected: '%s'", got ? got : "(null)", want ? want : "(null)");
    return r;
}

int like(const char *got, const char *want, const char *fmt, ...)
{
    int found = got && want && strstr(got, want) != NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vok(found, fmt, ap);
    va_end(ap);
    if (!r)
        diag("     got: '%s'   expected to contain: '%s'", got ? got : "(null)", want ? want : "(null)");
    return r;
}

int is_double(double got, double want, double tol, const char *fmt, ...)
{
    int good = !isnan(got) && !isnan(want) && fabs(got - want) <= tol;
    if (isinf(want) && got == want)
        good = 1;
    va_list ap;
    va_start(ap, fmt);
    int r = vok(good, fmt, ap);
    va_end(ap);
    if (!r)
        diag("     got: %.17g   expected: %.17g (tolerance %g)", got, want, tol);
    return r;
}

void skip(int n, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n; i++)
        printf("ok %d # SKIP %s\n", ++run, buf);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
}
