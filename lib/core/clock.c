/* clock.c - timeouts and deadlines that cannot overflow.
 *
 * A timeout is checked where it is read (fa4cp_timeout_check) and every
 * deadline is computed through fa4cp_deadline, which saturates: a huge or
 * non-finite timeout can never wrap time_t into the past (an instant false
 * timeout) or into undefined behaviour. */
#include "internal.h"

#include <math.h>
#include <time.h>

fa4cp_status fa4cp_timeout_check(const char *what, double timeout_s)
{
    if (!(timeout_s > 0) || !isfinite(timeout_s))
        return fa4cp_set_error(FA4CP_ERR_INVALID, "%s: %g is not a positive number of seconds", what,
                               timeout_s);
    if (timeout_s > FA4CP_TIMEOUT_MAX_S)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "%s: %g s is more than the maximum of %.0f s (7 days)",
                               what, timeout_s, FA4CP_TIMEOUT_MAX_S);
    return FA4CP_OK;
}

void fa4cp_deadline(int clock, double timeout_s, struct timespec *out)
{
    clock_gettime((clockid_t)clock, out);
    if (!(timeout_s > 0)) /* NaN, zero, negative: now */
        return;
    if (timeout_s > FA4CP_TIMEOUT_MAX_S)
        timeout_s = FA4CP_TIMEOUT_MAX_S;
    double whole = floor(timeout_s);
    long ns = out->tv_nsec + (long)((timeout_s - whole) * 1e9);
    out->tv_sec += (time_t)whole + ns / 1000000000L;
    out->tv_nsec = ns % 1000000000L;
}
