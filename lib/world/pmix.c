/* pmix.c - the PMIx bootstrap: world table and data exchange.
 *
 * Every exchange Puts under a fresh key ("fa4cp.<seq>"), Commits, and Fences
 * with PMIX_COLLECT_DATA, so the Gets that follow are local.  Every blocking
 * call has a deadline: the Fence runs non-blocking and is waited for with the
 * world timeout; when it runs out, each peer's key is probed (non-blocking,
 * briefly) so that the error names the ranks that never arrived.
 */
#include "world_internal.h"
#include "core/checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_PMIX

int fa4cp_pmix_built(void) { return 0; }
fa4cp_status fa4cp_pmix_init(fa4cp_world *w)
{
    FA4CP_UNUSED(w);
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "this libfa4cp was built without PMIx (configure --with-pmix)");
}
void fa4cp_pmix_finalize(fa4cp_world *w) { FA4CP_UNUSED(w); }
fa4cp_status fa4cp_pmix_allgather(fa4cp_world *w, const void *send, void *recv, size_t bytes)
{
    FA4CP_UNUSED(send);
    FA4CP_UNUSED(recv);
    FA4CP_UNUSED(bytes);
    return fa4cp_pmix_init(w);
}
fa4cp_status fa4cp_pmix_bcast(fa4cp_world *w, void *buf, size_t bytes)
{
    FA4CP_UNUSED(buf);
    FA4CP_UNUSED(bytes);
    return fa4cp_pmix_init(w);
}
fa4cp_status fa4cp_pmix_barrier(fa4cp_world *w) { return fa4cp_pmix_init(w); }
void fa4cp_pmix_abort(fa4cp_world *w, const char *msg)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(msg);
}

#else /* HAVE_PMIX */

#include <errno.h>
#include <pmix.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

typedef struct pmix_state {
    pmix_proc_t me;
    int initialized;
} pmix_state;

/* A non-blocking call's completion; heap-allocated and leaked when its
 * deadline passes, since PMIx may still call back later. */
typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done;
    pmix_status_t status;
    pmix_info_t *info;
    size_t ninfo;
} waiter;

static waiter *waiter_new(double timeout_s)
{
    waiter *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    pthread_mutex_init(&x->m, NULL);
    pthread_cond_init(&x->c, NULL);
    x->ninfo = 2;
    PMIX_INFO_CREATE(x->info, x->ninfo);
    bool collect = true;
    int tmo = (int)(timeout_s + 0.999);
    if (tmo < 1)
        tmo = 1;
    PMIX_INFO_LOAD(&x->info[0], PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
    PMIX_INFO_LOAD(&x->info[1], PMIX_TIMEOUT, &tmo, PMIX_INT);
    return x;
}

static void waiter_free(waiter *x)
{
    if (!x)
        return;
    PMIX_INFO_FREE(x->info, x->ninfo);
    pthread_mutex_destroy(&x->m);
    pthread_cond_destroy(&x->c);
    free(x);
}

static void op_done(pmix_status_t status, void *cbdata)
{
    waiter *x = cbdata;
    pthread_mutex_lock(&x->m);
    x->status = status;
    x->done = 1;
    pthread_cond_broadcast(&x->c);
    pthread_mutex_unlock(&x->m);
}

static void value_done(pmix_status_t status, pmix_value_t *kv, void *cbdata)
{
    FA4CP_UNUSED(kv); /* owned by the library */
    op_done(status, cbdata);
}

/* ------------------------------------------------------------------ peers that are gone
 * PMIx tells of a process that ended or aborted through an event (where the
 * launcher's server sends one); the handler notes the rank and wakes the
 * fence in progress, so the others need not wait for the fence timeout. */
#define MAX_GONE 16
static pthread_mutex_t ev_m = PTHREAD_MUTEX_INITIALIZER;
static waiter *ev_current; /* the fence being waited for */
static int ev_gone[MAX_GONE], ev_ngone;
static char ev_what[64];

static void note_gone(size_t id, pmix_status_t status, const pmix_proc_t *source, pmix_info_t info[],
                      size_t ninfo, pmix_info_t results[], size_t nresults,
                      pmix_event_notification_cbfunc_fn_t cbfunc, void *cbdata)
{
    FA4CP_UNUSED(id);
    FA4CP_UNUSED(results);
    FA4CP_UNUSED(nresults);
    long rank = source ? (long)source->rank : -1;
    for (size_t i = 0; i < ninfo; i++) /* the process the event is about, when given */
        if (!strcmp(info[i].key, PMIX_EVENT_AFFECTED_PROC) && info[i].value.type == PMIX_PROC &&
            info[i].value.data.proc)
            rank = (long)info[i].value.data.proc->rank;
    pthread_mutex_lock(&ev_m);
    if (rank >= 0 && rank < PMIX_RANK_VALID) {
        int seen = 0;
        for (int k = 0; k < ev_ngone; k++)
            seen |= ev_gone[k] == (int)rank;
        if (!seen && ev_ngone < MAX_GONE)
            ev_gone[ev_ngone++] = (int)rank;
    }
    snprintf(ev_what, sizeof ev_what, "%s", PMIx_Error_string(status));
    if (ev_current)
        op_done(PMIX_ERR_PROC_ABORTED, ev_current);
    pthread_mutex_unlock(&ev_m);
    if (cbfunc)
        cbfunc(PMIX_EVENT_ACTION_COMPLETE, NULL, 0, NULL, NULL, cbdata);
}

static void watch_peers(void)
{
    pmix_status_t codes[] = {PMIX_ERR_PROC_ABORTED, PMIX_PROC_TERMINATED, PMIX_EVENT_PROC_TERMINATED,
                             PMIX_ERR_PROC_TERM_WO_SYNC, PMIX_ERR_LOST_CONNECTION, PMIX_EVENT_JOB_END};
    pmix_status_t rc = PMIx_Register_event_handler(codes, sizeof codes / sizeof codes[0], NULL, 0, note_gone, NULL,
                                                   NULL);
    if (rc < 0)
        fa4cp_log(FA4CP_LOG_INFO, "PMIx event handler not registered: %s (a dead peer is found by the fence "
                  "timeout)", PMIx_Error_string(rc));
}

/* rank r's host, as PMIx knows it ("?" when it does not) */
static void peer_host(const fa4cp_world *w, int r, char *host, size_t len)
{
    pmix_state *s = w->pmix;
    pmix_proc_t p;
    pmix_value_t *v = NULL;
    snprintf(host, len, "?");
    PMIX_LOAD_PROCID(&p, s->me.nspace, (pmix_rank_t)r);
    if (PMIx_Get(&p, PMIX_HOSTNAME, NULL, 0, &v) == PMIX_SUCCESS && v && v->type == PMIX_STRING && v->data.string)
        snprintf(host, len, "%s", v->data.string);
    if (v)
        PMIX_VALUE_RELEASE(v);
}

/* "1 (host1), 3 (host3)" of the ranks the events named; 0 when none */
static int gone_text(fa4cp_world *w, char *buf, size_t len)
{
    int n = 0, gone[MAX_GONE], ng;
    size_t o = 0;
    buf[0] = 0;
    pthread_mutex_lock(&ev_m);
    ng = ev_ngone;
    memcpy(gone, ev_gone, sizeof gone);
    pthread_mutex_unlock(&ev_m);
    for (int k = 0; k < ng; k++) {
        char host[256];
        if (gone[k] == w->rank || gone[k] >= w->procs || o + 80 >= len)
            continue;
        peer_host(w, gone[k], host, sizeof host);
        o += (size_t)snprintf(buf + o, len - o, "%s%d (%s)", n ? ", " : "", gone[k], host);
        n++;
    }
    return n;
}

/* Test only: FA4CP_TEST_KILL_RANK=R:before|during - rank R (PMIX_RANK, known
 * before PMIx_Init) kills itself before PMIx_Init, or inside the first
 * exchange (after its Put and Commit, before the Fence). */
static void test_kill_hook(const char *when)
{
    const char *e = getenv("FA4CP_TEST_KILL_RANK"), *me = getenv("PMIX_RANK");
    const char *colon = e ? strchr(e, ':') : NULL;
    if (!colon || !me || atol(e) != atol(me) || strcmp(colon + 1, when))
        return;
    static int once;
    if (once++)
        return;
    fprintf(stderr, "fa4cp: FA4CP_TEST_KILL_RANK=%s: rank %s kills itself %s\n", e, me,
            !strcmp(when, "before") ? "before PMIx_Init" : "during the first exchange");
    fflush(stderr);
    raise(SIGKILL);
}

/* Wait until done or the deadline; 1 if done. */
static int waiter_wait(waiter *x, double timeout_s)
{
    struct timespec ts;
    fa4cp_deadline(CLOCK_REALTIME, timeout_s, &ts); /* saturated: never wraps into the past */
    pthread_mutex_lock(&x->m);
    while (!x->done) {
        if (pthread_cond_timedwait(&x->c, &x->m, &ts) == ETIMEDOUT)
            break;
    }
    int done = x->done;
    pthread_mutex_unlock(&x->m);
    return done;
}

static fa4cp_status pmix_fail(const char *what, pmix_status_t rc)
{
    return fa4cp_set_error(FA4CP_ERR_PMIX, "%s failed: %s (%d)", what, PMIx_Error_string(rc),
                           (int)rc);
}

static fa4cp_status get_value(const pmix_proc_t *who, const char *key, double timeout_s,
                              pmix_value_t **val)
{
    pmix_info_t info;
    int tmo = (int)(timeout_s + 0.999);
    PMIX_INFO_CONSTRUCT(&info);
    PMIX_INFO_LOAD(&info, PMIX_TIMEOUT, &tmo, PMIX_INT);
    pmix_status_t rc = PMIx_Get(who, key, &info, 1, val);
    PMIX_INFO_DESTRUCT(&info);
    if (rc != PMIX_SUCCESS || !*val) {
        char what[600];
        snprintf(what, sizeof what, "PMIx_Get(%s of rank %d)", key,
                 who->rank == PMIX_RANK_WILDCARD ? -1 : (int)who->rank);
        if (*val)
            PMIX_VALUE_RELEASE(*val);
        *val = NULL;
        if (rc == PMIX_ERR_TIMEOUT)
            return fa4cp_set_error(FA4CP_ERR_TIMEOUT, "%s timed out after %.0f s", what,
                                   timeout_s);
        return pmix_fail(what, rc == PMIX_SUCCESS ? PMIX_ERR_NOT_FOUND : rc);
    }
    return FA4CP_OK;
}

static fa4cp_status get_uint(const pmix_proc_t *who, const char *key, double timeout_s, long *out)
{
    pmix_value_t *v = NULL;
    fa4cp_status st = get_value(who, key, timeout_s, &v);
    if (st != FA4CP_OK)
        return st;
    switch (v->type) {
    case PMIX_UINT32: *out = (long)v->data.uint32; break;
    case PMIX_UINT16: *out = (long)v->data.uint16; break;
    case PMIX_INT: *out = (long)v->data.integer; break;
    case PMIX_UINT: *out = (long)v->data.uint; break;
    case PMIX_PROC_RANK: *out = (long)v->data.rank; break;
    default:
        st = fa4cp_set_error(FA4CP_ERR_PMIX, "PMIx key %s has unexpected type %d", key,
                             (int)v->type);
    }
    PMIX_VALUE_RELEASE(v);
    return st;
}

/* After a Fence ran out of time: which ranks never published `key`?
 * Probes every peer at once and waits a short while. */
static void name_missing(fa4cp_world *w, const char *key, char *buf, size_t len)
{
    pmix_state *s = w->pmix;
    int n = w->procs;
    waiter **ws = calloc((size_t)n, sizeof *ws);
    pmix_proc_t *procs = calloc((size_t)n, sizeof *procs);
    size_t o = 0;
    int missing = 0;
    buf[0] = '\0';
    if (!ws || !procs)
        goto out;
    for (int r = 0; r < n; r++) {
        if (r == w->rank)
            continue;
        ws[r] = waiter_new(2.0);
        if (!ws[r])
            continue;
        PMIX_LOAD_PROCID(&procs[r], s->me.nspace, (pmix_rank_t)r);
        if (PMIx_Get_nb(&procs[r], key, &ws[r]->info[1], 1, value_done, ws[r]) != PMIX_SUCCESS)
            op_done(PMIX_ERROR, ws[r]);
    }
    for (int r = 0; r < n; r++) {
        if (!ws[r])
            continue;
        int done = waiter_wait(ws[r], 3.0);
        if (done && ws[r]->status == PMIX_SUCCESS) {
            waiter_free(ws[r]);
            continue;
        }
        if (done)
            waiter_free(ws[r]); /* else leaked: the library may still call back */
        missing++;
        if (o + 80 < len) {
            char host[256] = "?";
            pmix_value_t *v = NULL;
            if (PMIx_Get(&procs[r], PMIX_HOSTNAME, NULL, 0, &v) == PMIX_SUCCESS && v &&
                v->type == PMIX_STRING && v->data.string)
                snprintf(host, sizeof host, "%s", v->data.string);
            if (v)
                PMIX_VALUE_RELEASE(v);
            o += (size_t)snprintf(buf + o, len - o, "%s%d (%s)", missing > 1 ? ", " : "", r, host);
        }
    }
out:
    free(ws);
    free(procs);
}

/* After a fence failed: the peers on this node whose process is gone.  Every
 * rank publishes its pid (fa4cp.pid, with its first exchange), so a peer that
 * died after publishing its part - invisible to name_missing - is found by
 * its node-mates: kill(pid, 0) says ESRCH. */
/* a process that is no more: gone, or a zombie not yet reaped */
static int proc_gone(long pid)
{
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 1;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    const char *paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

static int name_dead_local(fa4cp_world *w, char *buf, size_t len)
{
    pmix_state *s = w->pmix;
    char mine[256], host[256];
    int n = 0;
    long *pids = calloc((size_t)w->procs, sizeof *pids);
    buf[0] = 0;
    if (!pids)
        return 0;
    peer_host(w, w->rank, mine, sizeof mine);
    for (int r = 0; r < w->procs; r++) {
        pmix_proc_t p;
        if (r == w->rank)
            continue;
        peer_host(w, r, host, sizeof host);
        PMIX_LOAD_PROCID(&p, s->me.nspace, (pmix_rank_t)r);
        if (!strcmp(host, mine) && (get_uint(&p, "fa4cp.pid", 2.0, &pids[r]) != FA4CP_OK || pids[r] <= 0))
            pids[r] = 0;
        else if (strcmp(host, mine))
            pids[r] = 0;
    }
    /* the fence fails as the peer's connection drops: its process may take a
     * moment to end, so look again for up to 2 s */
    for (int tries = 0; tries < 40 && !n; tries++) {
        size_t o = 0;
        for (int r = 0; r < w->procs && o + 80 < len; r++)
            if (pids[r] && proc_gone(pids[r])) {
                peer_host(w, r, host, sizeof host);
                o += (size_t)snprintf(buf + o, len - o, "%s%d (%s, pid %ld)", n++ ? ", " : "", r, host, pids[r]);
            }
        if (!n) {
            struct timespec nap = {0, 50 * 1000 * 1000};
            nanosleep(&nap, NULL);
        }
    }
    free(pids);
    return n;
}

/* Put `bytes` under a fresh key (when data != NULL), Commit, Fence with the
 * deadline.  *key gets the key used. */
static fa4cp_status publish_and_fence(fa4cp_world *w, const void *data, size_t bytes, char *key,
                                      size_t keylen)
{
    fa4cp_status st = FA4CP_OK;
    pmix_state *s = w->pmix;
    pmix_status_t rc;
    waiter *x = NULL;
    static const char marker = 1;
    snprintf(key, keylen, "fa4cp.%u", w->seq++);
    if (!data) { /* every rank publishes, so a missing one can be named */
        data = &marker;
        bytes = 1;
    }
    {
        pmix_value_t v;
        PMIX_VALUE_CONSTRUCT(&v);
        v.type = PMIX_BYTE_OBJECT;
        v.data.bo.bytes = (char *)(uintptr_t)data; /* PMIx_Put copies */
        v.data.bo.size = bytes;
        FA4CP_PMIX_TRY(key, PMIx_Put(PMIX_GLOBAL, key, &v));
    }
    FA4CP_PMIX_TRY(key, PMIx_Commit());
    test_kill_hook("during");

    x = waiter_new(w->timeout_s);
    if (!x)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "PMIx fence: out of memory");
    pmix_proc_t all;
    PMIX_LOAD_PROCID(&all, s->me.nspace, PMIX_RANK_WILDCARD);
    /* the server's own timeout a little later than ours, so ours reports first */
    int tmo = (int)(w->timeout_s + 5.999);
    PMIX_INFO_LOAD(&x->info[1], PMIX_TIMEOUT, &tmo, PMIX_INT);
    pthread_mutex_lock(&ev_m);
    ev_current = x; /* an event about a dead peer ends the wait */
    pthread_mutex_unlock(&ev_m);
    rc = PMIx_Fence_nb(&all, 1, x->info, x->ninfo, op_done, x);
    if (rc == PMIX_OPERATION_SUCCEEDED)
        op_done(PMIX_SUCCESS, x);
    else if (rc != PMIX_SUCCESS)
        FA4CP_FAIL(FA4CP_ERR_PMIX, "PMIx_Fence_nb failed: %s", PMIx_Error_string(rc));
    int in_time = waiter_wait(x, w->timeout_s);
    pthread_mutex_lock(&ev_m);
    ev_current = NULL;
    pthread_mutex_unlock(&ev_m);
    char gone[512];
    if (gone_text(w, gone, sizeof gone)) {
        if (!x->done)
            x = NULL; /* leaked on purpose: PMIx may complete it later */
        FA4CP_FAIL(FA4CP_ERR_PEER,
                   "PMIx exchange '%s': rank%s %s ended (PMIx event: %s; killed or exited) before "
                   "the exchange completed; see its own error",
                   key, strchr(gone, ',') ? "s" : "", gone, ev_what);
    }
    if (!in_time || x->status == PMIX_ERR_TIMEOUT) {
        int done = x->done;
        if (!done)
            x = NULL; /* leaked on purpose: PMIx may complete it later */
        char who[512];
        name_missing(w, key, who, sizeof who);
        if (who[0])
            FA4CP_FAIL(FA4CP_ERR_PEER,
                       "PMIx exchange '%s' timed out after %.0f s: rank%s %s never arrived "
                       "(exited or hung before the exchange; see its own error)",
                       key, w->timeout_s, strchr(who, ',') ? "s" : "", who);
        int dead = name_dead_local(w, who, sizeof who);
        if (dead)
            FA4CP_FAIL(FA4CP_ERR_PEER,
                       "PMIx exchange '%s' timed out after %.0f s: rank%s %s died during the exchange "
                       "(its process is gone)",
                       key, w->timeout_s, dead > 1 ? "s" : "", who);
        FA4CP_FAIL(FA4CP_ERR_TIMEOUT,
                   "PMIx exchange '%s' timed out after %.0f s (some rank did not arrive; "
                   "FA4CP_BOOTSTRAP_TIMEOUT sets the limit)",
                   key, w->timeout_s);
    }
    if (x->status != PMIX_SUCCESS) {
        /* a fence that failed (PARTIAL-SUCCESS: a peer's part never came):
         * name the ranks whose data is missing */
        char who[512];
        name_missing(w, key, who, sizeof who);
        if (who[0])
            FA4CP_FAIL(FA4CP_ERR_PEER,
                       "PMIx exchange '%s' failed (%s): rank%s %s never contributed (killed or exited "
                       "during the exchange; see its own error)",
                       key, PMIx_Error_string(x->status), strchr(who, ',') ? "s" : "", who);
        int dead = name_dead_local(w, who, sizeof who);
        if (dead)
            FA4CP_FAIL(FA4CP_ERR_PEER,
                       "PMIx exchange '%s' failed (%s): rank%s %s died during the exchange (its process "
                       "is gone; see the launcher's message for the signal)",
                       key, PMIx_Error_string(x->status), dead > 1 ? "s" : "", who);
        FA4CP_FAIL(x->status == PMIX_ERR_PROC_ABORTED || x->status == PMIX_ERR_LOST_CONNECTION
                       ? FA4CP_ERR_PEER
                       : FA4CP_ERR_PMIX,
                   "PMIx fence of exchange '%s' failed: %s (a peer may have exited)", key,
                   PMIx_Error_string(x->status));
    }
out:
    waiter_free(x);
    return st;
}

/* Read rank r's value of key (exactly `bytes`) into dst. */
static fa4cp_status fetch(fa4cp_world *w, int r, const char *key, void *dst, size_t bytes)
{
    pmix_state *s = w->pmix;
    pmix_proc_t p;
    pmix_value_t *v = NULL;
    PMIX_LOAD_PROCID(&p, s->me.nspace, (pmix_rank_t)r);
    fa4cp_status st = get_value(&p, key, w->timeout_s, &v);
    if (st != FA4CP_OK)
        return st;
    if (v->type != PMIX_BYTE_OBJECT || v->data.bo.size != bytes)
        st = fa4cp_set_error(FA4CP_ERR_PEER,
                             "PMIx exchange '%s': rank %d sent %zu bytes, expected %zu (do all "
                             "ranks run the same program and arguments?)",
                             key, r, v->type == PMIX_BYTE_OBJECT ? v->data.bo.size : 0, bytes);
    else if (bytes)
        memcpy(dst, v->data.bo.bytes, bytes);
    PMIX_VALUE_RELEASE(v);
    return st;
}

int fa4cp_pmix_built(void) { return 1; }

fa4cp_status fa4cp_pmix_init(fa4cp_world *w)
{
    fa4cp_status st = FA4CP_OK;
    pmix_status_t rc;
    pmix_state *s = calloc(1, sizeof *s);
    if (!s)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "PMIx: out of memory");
    w->pmix = s;
    test_kill_hook("before");
    rc = PMIx_Init(&s->me, NULL, 0);
    if (rc != PMIX_SUCCESS)
        FA4CP_FAIL(FA4CP_ERR_PMIX,
                   "PMIx_Init failed: %s (%d): was this started by srun --mpi=pmix (or another "
                   "PMIx launcher)?",
                   PMIx_Error_string(rc), (int)rc);
    s->initialized = 1;
    watch_peers();
    {
        /* the pid, for name_dead_local (committed with the first exchange) */
        pmix_value_t v;
        PMIX_VALUE_CONSTRUCT(&v);
        v.type = PMIX_UINT32;
        v.data.uint32 = (uint32_t)getpid();
        FA4CP_PMIX_TRY("fa4cp.pid", PMIx_Put(PMIX_GLOBAL, "fa4cp.pid", &v));
    }

    pmix_proc_t wild;
    PMIX_LOAD_PROCID(&wild, s->me.nspace, PMIX_RANK_WILDCARD);
    long size = 1, local_rank = 0, local_size = 1, node = 0;
    int singleton = strncmp(s->me.nspace, "singleton", 9) == 0;
    if (!singleton)
        FA4CP_TRY(get_uint(&wild, PMIX_JOB_SIZE, w->timeout_s, &size));
    FA4CP_TRY(fa4cp_world_check_launch(s->me.nspace, (int)size));
    w->rank = (int)s->me.rank;
    w->size = (int)size;
    w->procs = (int)size;
    fa4cp_log_set_rank(w->rank);
    char host[FA4CP_HOST_MAX] = "";
    if (!singleton) {
        FA4CP_TRY(get_uint(&s->me, PMIX_LOCAL_RANK, w->timeout_s, &local_rank));
        FA4CP_TRY(get_uint(&wild, PMIX_LOCAL_SIZE, w->timeout_s, &local_size));
        FA4CP_TRY(get_uint(&s->me, PMIX_NODEID, w->timeout_s, &node));
        pmix_value_t *v = NULL;
        FA4CP_TRY(get_value(&s->me, PMIX_HOSTNAME, w->timeout_s, &v));
        if (v->type == PMIX_STRING && v->data.string)
            snprintf(host, sizeof host, "%s", v->data.string);
        PMIX_VALUE_RELEASE(v);
    }
    if (w->rank < 0 || w->rank >= w->size)
        FA4CP_FAIL(FA4CP_ERR_PMIX, "PMIx rank %d is not below the job size %d", w->rank, w->size);

    w->table = fa4cp_calloc((size_t)w->size, sizeof *w->table, "world table");
    if (!w->table)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "PMIx: world table of %d ranks: out of memory", w->size);
    fa4cp_world_row mine;
    fa4cp_world_fill_row(&mine, w->rank, (int)node, (int)local_rank, (int)local_size,
                         host[0] ? host : NULL, w->visible_gpus);
    fa4cp_world_test_exit_hook(w->rank);
    FA4CP_TRY(fa4cp_pmix_allgather(w, &mine, w->table, sizeof mine));
    for (int r = 0; r < w->size; r++)
        if (w->table[r].rank != r)
            FA4CP_FAIL(FA4CP_ERR_PEER, "PMIx: rank %d sent the row of rank %d", r,
                       w->table[r].rank);
out:
    if ((st == FA4CP_ERR_PEER || st == FA4CP_ERR_TIMEOUT) && s->initialized) {
        /* a peer is missing: end the whole job now, so that the missing rank (possibly
         * hung) does not keep the step alive; the message names it */
        char msg[1024];
        snprintf(msg, sizeof msg, "rank %d: %s", w->rank, fa4cp_last_error());
        fprintf(stderr, "fa4cp: bootstrap failed: %s\n", msg);
        fflush(stderr);
        PMIx_Abort(3, msg, NULL, 0);
    }
    return st;
}

void fa4cp_pmix_finalize(fa4cp_world *w)
{
    pmix_state *s = w->pmix;
    if (s && s->initialized)
        PMIx_Finalize(NULL, 0);
    free(s);
    w->pmix = NULL;
}

fa4cp_status fa4cp_pmix_allgather(fa4cp_world *w, const void *send, void *recv, size_t bytes)
{
    fa4cp_status st = FA4CP_OK;
    char key[64];
    FA4CP_TRY(publish_and_fence(w, send, bytes, key, sizeof key));
    for (int r = 0; r < w->procs; r++) {
        if (r == w->rank) {
            memmove((char *)recv + (size_t)r * bytes, send, bytes);
            continue;
        }
        FA4CP_TRY(fetch(w, r, key, (char *)recv + (size_t)r * bytes, bytes));
    }
out:
    return st;
}

fa4cp_status fa4cp_pmix_bcast(fa4cp_world *w, void *buf, size_t bytes)
{
    fa4cp_status st = FA4CP_OK;
    char key[64];
    FA4CP_TRY(publish_and_fence(w, w->rank == 0 ? buf : NULL, bytes, key, sizeof key));
    if (w->rank != 0)
        FA4CP_TRY(fetch(w, 0, key, buf, bytes));
out:
    return st;
}

fa4cp_status fa4cp_pmix_barrier(fa4cp_world *w)
{
    char key[64];
    return publish_and_fence(w, NULL, 0, key, sizeof key);
}

void fa4cp_pmix_abort(fa4cp_world *w, const char *msg)
{
    pmix_state *s = w->pmix;
    if (!s || !s->initialized)
        return;
    PMIx_Abort(3, msg, NULL, 0);
}

#endif /* HAVE_PMIX */
