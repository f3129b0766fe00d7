/* test_status.c - status names, per-thread errors, dtype conversions, logging. */
#include "fa4cp.h"
#include "core/internal.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *other_thread(void *arg)
{
    (void)arg;
    /* a fresh thread starts with no error and its own buffer */
    int clean = fa4cp_last_error()[0] == '\0';
    fa4cp_set_error(FA4CP_ERR_IO, "thread error");
    return clean ? (void *)1 : NULL;
}

/* exact bf16 rounding from the definition: nearest representable, ties to even */
static float bf16_ref(float f)
{
    if (f == 0 || !isfinite(f))
        return f;
    int e;
    frexpf(f, &e);                 /* f = m * 2^e, 0.5 <= |m| < 1 */
    double ulp = ldexp(1.0, e - 8); /* 8 significant bits */
    double q = (double)f / ulp;
    double r = nearbyint(q); /* default rounding mode: to nearest even */
    return (float)(r * ulp);
}

int main(void)
{
    plan(0);
    test_rng rng = test_rng_init("test_status");

    /* status names */
    is_string(fa4cp_strerror(FA4CP_OK), "success", "strerror(OK)");
    is_string(fa4cp_strerror(FA4CP_ERR_INVALID), "invalid argument", "strerror(INVALID)");
    int distinct = 1;
    for (int a = 0; a <= FA4CP_ERR_INTERNAL; a++)
        for (int b = a + 1; b <= FA4CP_ERR_INTERNAL; b++)
            if (strcmp(fa4cp_strerror((fa4cp_status)a), fa4cp_strerror((fa4cp_status)b)) == 0)
                distinct = 0;
    ok(distinct, "every status has its own name");
    is_string(fa4cp_strerror((fa4cp_status)999), "unknown status", "unknown status code");

    /* last error */
    fa4cp_clear_error();
    is_string(fa4cp_last_error(), "", "no error after clear");
    is_int(fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "x=%d", 42), FA4CP_ERR_UNSUPPORTED,
           "set_error returns its status");
    is_string(fa4cp_last_error(), "x=42", "message formatted");
    fa4cp_error_context(FA4CP_ERR_UNSUPPORTED, "while %s", "testing");
    is_string(fa4cp_last_error(), "while testing: x=42", "context prefixed");
    pthread_t t;
    void *clean = NULL;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &clean);
    ok(clean != NULL, "a new thread has no last error");
    is_string(fa4cp_last_error(), "while testing: x=42", "another thread's error does not leak here");
    is_string(fa4cp_version(), "0.1.0", "version string");

    /* dtypes */
    fa4cp_dtype dt;
    ok(fa4cp_dtype_parse("bfloat16", &dt) == FA4CP_OK && dt == FA4CP_BF16, "parse bfloat16");
    ok(fa4cp_dtype_parse("fp64", &dt) == FA4CP_OK && dt == FA4CP_FP64, "parse fp64");
    is_int(fa4cp_dtype_parse("fp8", &dt), FA4CP_ERR_INVALID, "fp8 is refused");
    like(fa4cp_last_error(), "unknown dtype 'fp8'", "refusal names the dtype");
    is_int((long long)fa4cp_dtype_size(FA4CP_BF16), 2, "bf16 is 2 bytes");
    is_int(fa4cp_lse_dtype(FA4CP_BF16), FA4CP_FP32, "lse of bf16 is fp32");
    is_int(fa4cp_lse_dtype(FA4CP_FP64), FA4CP_FP64, "lse of fp64 is fp64");

    /* bf16 conversion against the rounding definition on random values */
    int bad_bf16 = 0, bad_fp16 = 0;
    for (int i = 0; i < 200000; i++) {
        float f = (float)(test_rng_normal(&rng) * ldexp(1.0, test_rng_int(&rng, -30, 30)));
        float got = fa4cp_bf16_to_float(fa4cp_float_to_bf16(f));
        if (got != bf16_ref(f))
            bad_bf16++;
        /* fp16: within half an ulp (11 significant bits) in the normal range */
        float g = (float)(test_rng_normal(&rng) * 100.0);
        float h = fa4cp_fp16_to_float(fa4cp_float_to_fp16(g));
        if (fabsf(g) > 6.2e-5f && fabs((double)h - g) > fabs((double)g) * ldexp(1.0, -11) * 1.0000001)
            bad_fp16++;
    }
    is_int(bad_bf16, 0, "bf16 round-to-nearest-even matches the definition on 200000 random values");
    is_int(bad_fp16, 0, "fp16 rounding error within half an ulp on 200000 random values");
    ok(isnan(fa4cp_bf16_to_float(fa4cp_float_to_bf16(NAN))), "bf16 keeps NaN");
    ok(isnan(fa4cp_fp16_to_float(fa4cp_float_to_fp16(NAN))), "fp16 keeps NaN");
    ok(isinf(fa4cp_fp16_to_float(fa4cp_float_to_fp16(70000.0f))), "fp16 overflows to inf");
    is_double(fa4cp_fp16_to_float(fa4cp_float_to_fp16(65504.0f)), 65504.0, 0, "fp16 max is exact");
    is_double(fa4cp_fp16_to_float(fa4cp_float_to_fp16(ldexpf(1.0f, -24))), ldexp(1.0, -24), 0,
              "fp16 smallest subnormal is exact");
    is_double(fa4cp_bf16_to_float(fa4cp_float_to_bf16(1.0f + ldexpf(1.0f, -8))), 1.0, 0,
              "bf16 tie rounds to even (down)");
    is_double(fa4cp_bf16_to_float(fa4cp_float_to_bf16(1.0f + 3 * ldexpf(1.0f, -8))),
              1.0 + ldexp(1.0, -6), 0, "bf16 tie rounds to even (up)");

    /* allocation */
    void *p = fa4cp_malloc(100, "test");
    ok(p && ((uintptr_t)p % 64) == 0, "fa4cp_malloc is 64-byte aligned");
    fa4cp_free(p);
    p = fa4cp_calloc((size_t)-1, 16, "an impossible buffer");
    ok(p == NULL, "overflowing calloc fails");
    like(fa4cp_last_error(), "an impossible buffer", "the failure names what it was for");

    /* deadlines (issue 15, finding 2): saturated, never wrapped into the past */
    {
        struct timespec now, d;
        clock_gettime(CLOCK_MONOTONIC, &now);
        const double huge[] = {1e19, 1e308, INFINITY};
        int good = 1;
        for (int i = 0; i < 3; i++) {
            fa4cp_deadline(CLOCK_MONOTONIC, huge[i], &d);
            double ahead = (double)(d.tv_sec - now.tv_sec) + 1e-9 * (double)(d.tv_nsec - now.tv_nsec);
            good &= ahead > FA4CP_TIMEOUT_MAX_S - 1 && ahead < FA4CP_TIMEOUT_MAX_S + 60 && d.tv_nsec >= 0 &&
                    d.tv_nsec < 1000000000L;
        }
        ok(good, "a deadline 1e19, 1e308 or inf seconds away is the maximum (%.0f s) ahead, not in the past",
           FA4CP_TIMEOUT_MAX_S);
        fa4cp_deadline(CLOCK_MONOTONIC, 2.75, &d);
        double ahead = (double)(d.tv_sec - now.tv_sec) + 1e-9 * (double)(d.tv_nsec - now.tv_nsec);
        ok(ahead >= 2.75 && ahead < 3.75 && d.tv_nsec < 1000000000L, "a 2.75 s deadline is 2.75 s ahead (%.3f)",
           ahead);
        fa4cp_deadline(CLOCK_MONOTONIC, NAN, &d);
        ahead = (double)(d.tv_sec - now.tv_sec) + 1e-9 * (double)(d.tv_nsec - now.tv_nsec);
        ok(ahead >= 0 && ahead < 1, "a NaN timeout is now, not undefined");
        ok(fa4cp_timeout_check("run.timeout", 1e19) == FA4CP_ERR_INVALID, "a 1e19 s timeout is refused");
        like(fa4cp_last_error(), "run.timeout: 1e+19 s is more than the maximum of 604800 s",
             "... with the maximum");
        ok(fa4cp_timeout_check("t", 0) && fa4cp_timeout_check("t", -1) && fa4cp_timeout_check("t", NAN) &&
               !fa4cp_timeout_check("t", FA4CP_TIMEOUT_MAX_S) && !fa4cp_timeout_check("t", 1e-3),
           "0, -1 and NaN are refused; 1 ms and the maximum are taken");
    }

    /* logging: default level is warn */
    if (!getenv("FA4CP_LOG")) {
        ok(fa4cp_log_enabled(FA4CP_LOG_WARN) && !fa4cp_log_enabled(FA4CP_LOG_INFO),
           "default log level is warn");
    } else {
        skip(1, "FA4CP_LOG is set in the environment");
    }
    fa4cp_log_set_rank(3);
    is_int(fa4cp_log_rank(), 3, "log rank is per thread and settable");
    return done_testing();
}
