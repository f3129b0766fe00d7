/* log.c - leveled logging to stderr, lines prefixed "host:rank". */
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static int log_level = FA4CP_LOG_WARN;
static char log_host[64] = "?";
static _Thread_local int log_rank = -1;

static void log_init(void)
{
    const char *e = getenv("FA4CP_LOG");
    if (e && *e) {
        static const char *names[] = {"error", "warn", "info", "debug"};
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(e, names[i]) == 0) {
                log_level = i;
                found = 1;
            }
        if (!found)
            fprintf(stderr, "fa4cp: FA4CP_LOG='%s' is not one of error, warn, info, debug; using warn\n", e);
    }
    if (gethostname(log_host, sizeof log_host) != 0)
        snprintf(log_host, sizeof log_host, "?");
    log_host[sizeof log_host - 1] = '\0';
    char *dot = strchr(log_host, '.');
    if (dot)
        *dot = '\0';
}

int fa4cp_log_enabled(fa4cp_log_level level)
{
    pthread_once(&log_once, log_init);
    return (int)level <= log_level;
}

void fa4cp_log_set_rank(int rank) { log_rank = rank; }
int fa4cp_log_rank(void) { return log_rank; }

void fa4cp_log(fa4cp_log_level level, const char *fmt, ...)
{
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (!fa4cp_log_enabled(level))
        return;
    char msg[2048], rank[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_rank >= 0)
        snprintf(rank, sizeof rank, "%d", log_rank);
    else
        snprintf(rank, sizeof rank, "-");
    /* one fprintf so that lines of threads do not interleave */
    fprintf(stderr, "%s:%s %s %s\n", log_host, rank, tags[level], msg);
}
