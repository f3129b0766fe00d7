/* run_session.c - an execution of fa4cp-run between the world and the
 * printing: the layout of the job, the checks before the first case, and
 * one case from its memory checks to its verdict. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run.h"
#include "run_case.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int run_layout_summary(const world_info *w, fa4cp_workload *const *wl, int nfiles, char *text, size_t len,
                       char *msg, size_t msglen)
{
    int seen[64], nseen = 0;
    size_t at = 0;
    text[0] = 0;
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            int dup = 0;
            for (int j = 0; j < nseen; j++)
                dup |= seen[j] == c->cp;
            if (dup || nseen == 64)
                continue;
            seen[nseen++] = c->cp;
            fa4cp_layout *l = NULL;
            if (fa4cp_layout_build(w->table, w->size, c->cp, 0, 1, &l)) {
                snprintf(msg, msglen, "layout for cp.size %d: %s", c->cp, fa4cp_last_error());
                return RUN_USAGE;
            }
            int hops = 0, nodes = 0;
            for (int g = 0; g < fa4cp_layout_cp_groups(l); g++) {
                hops += fa4cp_layout_hops(l, g);
                if (fa4cp_layout_group_nodes(l, g) > nodes)
                    nodes = fa4cp_layout_group_nodes(l, g);
            }
            if (at < len)
                at += (size_t)snprintf(text + at, len - at,
                                       "%scp %d: %d group(s), up to %d node(s) each, %d inter-node ring hop(s)",
                                       at ? "; " : "", c->cp, fa4cp_layout_cp_groups(l), nodes, hops);
            fa4cp_layout_destroy(l);
        }
    return RUN_OK;
}

const char *run_transport_text(const world_info *w, fa4cp_workload *const *wl, int nfiles)
{
    int cpu = 0, cuda = 0;
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            cpu |= fa4cp_workload_get(wl[i], k)->backend == FA4CP_BACKEND_CPU;
            cuda |= fa4cp_workload_get(wl[i], k)->backend == FA4CP_BACKEND_CUDA;
        }
    if (!strcmp(w->kind, "local"))
        return "local (threads)";
    if (w->procs == 1) /* cuda cases over an NCCL comm of one rank, cpu cases in-process */
        return cuda ? "NCCL (one process per rank)" : "local (threads)";
    return cpu && cuda ? "NCCL (cuda cases) and mpi (cpu cases), one process per rank"
           : cpu      ? "mpi (one process per rank)"
                      : "NCCL (one process per rank)";
}

int run_session_open(run_session *s, world_info *w, fa4cp_workload *const *wl, int nfiles, char *msg,
                     size_t msglen, char *bail, size_t baillen)
{
    memset(s, 0, sizeof *s);
    s->w = w;
    /* multi-process (srun --mpi=pmix, mpirun): one rank per process, CP over
     * NCCL (cuda cases) or MPI (cpu cases) */
    s->mp = strcmp(w->kind, "local") != 0;
    int any_cuda = 0, any_cpu = 0;
    double max_timeout = 0;
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            any_cuda |= c->backend == FA4CP_BACKEND_CUDA;
            any_cpu |= c->backend == FA4CP_BACKEND_CPU;
            if (c->timeout_s > max_timeout)
                max_timeout = c->timeout_s;
            if (s->mp && w->procs > 1 && c->backend == FA4CP_BACKEND_CPU && !fa4cp_mpi_available()) {
                snprintf(msg, msglen,
                         "%s case %d (%s): the cpu backend in a launch of %d processes runs over the mpi transport, "
                         "and this build of fa4cp has none (configure --with-mpi; Debian: libopenmpi-dev); or run "
                         "it with --ranks N without srun",
                         c->file, c->index, c->label[0] ? c->label : c->name, w->procs);
                snprintf(bail, baillen, "the cpu backend in a multi-process launch needs the mpi transport (exit 3)");
                return RUN_RUNTIME;
            }
        }
    if (s->mp && w->procs > 1 && fa4cp_world_kind_of(w->world) != FA4CP_WORLD_PMIX) {
        snprintf(msg, msglen,
                 "running cases in a launch of %d processes exchanges results (and the NCCL id) over PMIx, but "
                 "this world came from the %s environment: launch with srun --mpi=pmix (or mpirun)",
                 w->procs, w->kind);
        snprintf(bail, baillen, "multi-process runs need the PMIx bootstrap (exit 3)");
        return RUN_RUNTIME;
    }
    if (s->mp && any_cuda) {
        char why[600] = "", agreed[800] = "";
        int rc = run_mp_gpu_ready(w, why, sizeof why);
        if ((rc = run_mp_agree(w, rc, why, "GPU check", agreed, sizeof agreed))) {
            snprintf(msg, msglen, "cannot run the cuda cases of this %s launch of %d process(es): %s", w->kind,
                     w->procs, agreed);
            snprintf(bail, baillen, "%s (exit 3)", agreed);
            return RUN_RUNTIME;
        }
    }
    s->mps.timeout_s = max_timeout > 0 ? max_timeout : 300.0;
    if (s->mp && w->procs > 1 && any_cpu) {
        /* MPI, the cpu cases' transport: up after the world, with its ranks */
        char why[600] = "", agreed[800] = "";
        int rc = RUN_OK;
        if (fa4cp_mpi_world_init(w->world, s->mps.timeout_s)) {
            rc = RUN_RUNTIME;
            snprintf(why, sizeof why, "%s", fa4cp_last_error());
        }
        if ((rc = run_mp_agree(w, rc, why, "MPI check", agreed, sizeof agreed))) {
            snprintf(msg, msglen, "cannot run the cpu cases of this %s launch of %d process(es) over MPI: %s",
                     w->kind, w->procs, agreed);
            snprintf(bail, baillen, "%s (exit 3)", agreed);
            return RUN_RUNTIME;
        }
    }
    if (s->mp && (any_cuda || w->procs > 1))
        run_mp_watch_start(w);
    /* between two exchanges a rank may work up to run.timeout (a full check
     * on CP rank 0 while its peers wait): the exchanges wait that long too */
    if (s->mp && fa4cp_world_timeout(w->world) < max_timeout + 30.0)
        fa4cp_world_set_timeout(w->world, max_timeout + 30.0);
    if (!run_exec_available()) {
        snprintf(msg, msglen, "this build of fa4cp has no CP executor (lib/cp*.c not linked in); --dry-run and "
                              "--explain work");
        snprintf(bail, baillen, "no CP executor in this build (exit 3)");
        return RUN_RUNTIME;
    }
    const char *ie = getenv("FA4CP_RUN_INJECT_ERROR");
    s->inject = ie && (atoi(ie) || !strcmp(ie, "out") || !strcmp(ie, "dk"));
    /* test only: FA4CP_RUN_INJECT_FAULT=R makes world rank R fail before its first CP call */
    const char *fault = getenv("FA4CP_RUN_INJECT_FAULT");
    if (fault && *fault)
        s->inject |= (atoi(fault) + 1) << 1;
    return RUN_OK;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int run_case_runnable(const fa4cp_case *c, const world_info *w, int dry, char *msg, size_t len)
{
    /* what the backend's kernels take (head dims, dtypes) */
    if (fa4cp_attn_supports(c->backend, c->dtype, c->head_dim, c->head_dim_v, c->backward)) {
        snprintf(msg, len, "run.backend %s cannot run it: %s", fa4cp_backend_name(c->backend), fa4cp_last_error());
        return RUN_USAGE;
    }
    if (dry && w->kind && !strcmp(w->kind, "plan"))
        return RUN_OK; /* a planned cluster: its memory is not this machine's */
    /* memory: the GPUs (NVML, when it can tell), the host */
    if (c->backend == FA4CP_BACKEND_CUDA && run_check_gpu_memory(c, w, msg, len))
        return RUN_RUNTIME;
    if (!dry && c->backend == FA4CP_BACKEND_CUDA && !fa4cp_backend_available(FA4CP_BACKEND_CUDA)) {
        snprintf(msg, len,
                 "run.backend cuda is not available here: no usable CUDA device, or this build has no "
                 "CUDA kernels (configure --with-cuda, run on a GPU node, or --backend cpu)");
        return RUN_RUNTIME;
    }
    if (c->backend == FA4CP_BACKEND_CPU || !dry) {
        /* host memory: shared by the ranks of this process, or of this node */
        double avail = run_host_mem_available();
        size_t need = fa4cp_case_memory(c, 1);
        int mp = w->procs > 1;
        int sharing = mp && w->table ? w->table[w->rank].local_size : w->size;
        if (avail > 0 && fa4cp_case_check_memory(c, need, (size_t)(avail / (sharing > 0 ? sharing : 1)),
                                                 "host memory (MemAvailable per rank)")) {
            snprintf(msg, len, "%s", fa4cp_last_error());
            return RUN_RUNTIME;
        }
    }
    return RUN_OK;
}

void run_case(run_session *s, const fa4cp_case *c, rank_result *res, case_outcome *oc)
{
    const world_info *w = s->w;
    double t0 = wall_ms();
    memset(oc, 0, sizeof *oc);
    memset(res, 0, sizeof *res * (size_t)w->size);
    oc->exit_code = run_case_runnable(c, w, 0, oc->msg, sizeof oc->msg);
    if (s->mp) { /* every process skips a case that one of them cannot run */
        char agreed[sizeof oc->msg], what[64];
        snprintf(what, sizeof what, "case %d", c->index);
        oc->exit_code = run_mp_agree(w, oc->exit_code, oc->msg, what, agreed, sizeof agreed);
        snprintf(oc->msg, sizeof oc->msg, "%s", agreed);
    }
    if (!oc->exit_code) {
        /* one process per rank: cuda cases always (NCCL), cpu cases when there
         * are several processes (mpi); else the ranks are threads */
        int rc = s->mp && (c->backend == FA4CP_BACKEND_CUDA || w->procs > 1)
                     ? run_procs(&s->mps, c, w, s->inject, res, oc->msg, sizeof oc->msg)
                     : run_local(c, w, s->inject, res, oc->msg, sizeof oc->msg);
        if (rc)
            oc->exit_code = rc;
    }
    int sig = 0, fdone = c->iters, bdone = c->iters;
    for (int r = 0; r < w->size && !oc->exit_code; r++)
        if (res[r].interrupted) {
            sig = res[r].interrupted;
            fdone = res[r].fwd_done < fdone ? res[r].fwd_done : fdone;
            bdone = res[r].bwd_done < bdone ? res[r].bwd_done : bdone;
        }
    if (!oc->exit_code) {
        run_judge(c, w, res, w->size, oc);
        if (sig) { /* stopped between two timed iterations: what it measured stays */
            oc->exit_code = 128 + sig;
            oc->result = "INTERRUPTED";
            for (int t = 0; t < NERR; t++)
                oc->err_t[t] = -1;
            oc->err = -1;
            const char *name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1"
                                                                                               : "a signal";
            if (fdone < c->iters || !c->backward)
                bdone = 0;
            snprintf(oc->msg, sizeof oc->msg,
                     "interrupted by %s after %d of %d timed forward and %d of %d backward iteration(s); the times "
                     "are over those, not verified", name, fdone, c->iters, bdone, c->backward ? c->iters : 0);
        }
        oc->wall_ms = wall_ms() - t0;
        return;
    }
    oc->result = oc->exit_code == RUN_TIMEOUT ? "TIMEOUT" : "ERROR";
    oc->wall_ms = wall_ms() - t0;
    oc->setup_ms = oc->gen_ms = oc->timed_ms = oc->check_ms = -1;
    oc->fwd_ms = oc->bwd_ms = oc->err = -1;
    oc->fwd_tf = oc->bwd_tf = NAN;
    for (int t = 0; t < NERR; t++)
        oc->err_t[t] = -1;
}

void run_session_close(run_session *s)
{
    run_dev_release_all(); /* what the ranks kept on their GPUs between cases */
    run_mp_close(&s->mps);
}
