/* run.h - the runner of fa4cp-run (the run layer): bring the world up,
 * check that the cases can run, run a case on the local world (threads) or
 * the multi-process one (a process per rank: NCCL for the cuda backend, MPI
 * for the cpu backend), judge it and record it.
 * The tools (bin/) keep argv, printing and exit codes. */
#ifndef FA4CP_RUN_H
#define FA4CP_RUN_H

#include "fa4cp.h"
#include "run_exec.h"

#include <stddef.h>
#include <stdio.h>

/* The runner's verdicts; they are fa4cp-run's exit codes (bin/exit_codes.h). */
typedef enum run_verdict {
    RUN_OK = 0,
    RUN_USAGE = 2,   /* usage or workload error */
    RUN_RUNTIME = 3, /* CUDA, NCCL, PMIx, memory, transport */
    RUN_TIMEOUT = 4, /* a case ran past run.timeout */
    RUN_VERIFY = 5,  /* verification failed */
    RUN_GATE = 6,    /* below a performance gate */
    RUN_LAUNCH = 8   /* started the wrong way: srun without --mpi=pmix (every task) */
} run_verdict;

typedef struct world_info {
    fa4cp_world *world;
    const fa4cp_world_row *table;
    int size;   /* ranks */
    int rank;   /* this process's rank (0 in local mode) */
    int procs;  /* processes */
    int nodes;
    const char *kind; /* "local", "pmix", "slurm", "plan" */
    char host[96];
    fa4cp_world_row *planned; /* run_world_plan's table (freed by the caller) */
} world_info;

typedef struct case_outcome {
    int exit_code;
    const char *result; /* "OK", "FAILED", "BELOW GATE", "ERROR", "TIMEOUT" */
    double fwd_ms, bwd_ms, fwd_tf, bwd_tf, err, tol;
    double err_t[NERR];
    /* phase times (ms): max over ranks (-1: not reached); wall: the whole
     * case on this process, from its memory checks to its verdict */
    double setup_ms, gen_ms, timed_ms, check_ms, wall_ms;
    char msg[1200];
} case_outcome;

/* The communicators of a multi-process run - NCCL for cuda cases, mpi for
 * cpu cases - kept while consecutive cases share a cp.size and a backend. */
typedef struct mp_state {
    fa4cp_nccl_comms comms;  /* backend cuda */
    fa4cp_mpi_comms mcomms;  /* backend cpu */
    fa4cp_layout *layout;
    int cp;            /* cp.size of the communicators (0: none) */
    int backend;       /* the backend they are for */
    double timeout_s;  /* NCCL watchdog, mpi waits: the longest run.timeout of the job */
} mp_state;

/* An execution: the world, its communicators, the test injections. */
typedef struct run_session {
    world_info *w;
    mp_state mps;
    int mp;     /* a multi-process launch */
    int inject; /* tests only: FA4CP_RUN_INJECT_ERROR / _FAULT */
} run_session;

/* ---- run_world.c */
/* Bring up the world (PMIx, the Slurm environment, or local mode with
 * `ranks` threads); RUN_OK or a verdict, the message in fa4cp_last_error(). */
int run_world_up(world_info *w, int ranks);
/* A planned world for a dry run: `nodes` nodes of `tpn` tasks ("8", or one
 * count per node "8,8,4"), distribution block|cyclic (NULL: block), one GPU
 * a task - fa4cp-layout --nodes' planner.  Nothing is launched; the message
 * of a RUN_USAGE is printed. */
int run_world_plan(world_info *w, int nodes, const char *tpn, const char *dist);
double run_host_mem_available(void); /* bytes, -1 unknown */
const char *run_mask_text(const fa4cp_case *c, char *buf, size_t len);
void run_heads_text(const fa4cp_case *c, char *buf, size_t len);
/* "128", or "192/128" when head_dim_v differs */
void run_dims_text(const fa4cp_case *c, char *buf, size_t len);
/* "fa4cp 0.1.0, NCCL .., CUDA .. (kernels sm_90a), driver .." (the driver
 * only when query_driver) */
void run_versions(char *buf, size_t len, int query_driver);
/* the GPUs that `ranks` ranks of case c really use */
int run_gpus_used(const fa4cp_case *c, const world_info *w, int ranks);
/* RUN_OK when the case fits every GPU of this process (or NVML cannot
 * tell); RUN_RUNTIME with the numbers in msg */
int run_check_gpu_memory(const fa4cp_case *c, const world_info *w, char *msg, size_t len);

/* ---- run_session.c */
/* The transports the cases of this world use, for the header: "local
 * (threads)", "NCCL (one process per rank)", "mpi (one process per rank)". */
const char *run_transport_text(const world_info *w, fa4cp_workload *const *wl, int nfiles);
/* The layout of every CP size of the job, one summary line; RUN_USAGE with
 * the message in msg when a cp.size has no layout on this world. */
int run_layout_summary(const world_info *w, fa4cp_workload *const *wl, int nfiles, char *text,
                       size_t len, char *msg, size_t msglen);
/* Before the first case: can this world execute these cases (MPI for the
 * cpu backend in several processes, the PMIx bootstrap for several, the
 * GPUs), and start what a multi-process run needs (MPI after the world,
 * checked against it; the case watchdog).  RUN_OK, or a verdict with the
 * message (msg) and a TAP bail-out text (bail). */
int run_session_open(run_session *s, world_info *w, fa4cp_workload *const *wl, int nfiles, char *msg,
                     size_t msglen, char *bail, size_t baillen);
/* Can case c run here: what its backend's kernels take (head dims, dtypes),
 * then memory (the GPUs through NVML, the host); dry: no GPU touched and no
 * device needed.  RUN_OK, or a verdict with the reason in msg. */
int run_case_runnable(const fa4cp_case *c, const world_info *w, int dry, char *msg, size_t len);
/* Run case c: memory checks, every process agreeing, the run, the verdict. */
void run_case(run_session *s, const fa4cp_case *c, rank_result *res, case_outcome *oc);
void run_session_close(run_session *s);

/* ---- run_local.c, run_procs.c: one case; RUN_OK or a verdict with msg */
int run_local(const fa4cp_case *c, const world_info *w, int inject, rank_result *res, char *msg,
              size_t msglen);
int run_procs(mp_state *m, const fa4cp_case *c, const world_info *w, int inject, rank_result *res,
              char *msg, size_t msglen);
/* every process's verdict on something (what), agreed: the worst, and its message */
int run_mp_agree(const world_info *w, int code, const char *why, const char *what, char *msg, size_t len);
int run_mp_gpu_ready(const world_info *w, char *why, size_t len);
void run_mp_watch_start(const world_info *w);
/* Called by the multi-process watchdog, on its thread, when case c ran past
 * run.timeout, just before it aborts the job with msg: the runner records
 * the case TIMEOUT and the rest NOT RUN and prints its footer. */
void run_mp_watch_on_fire(void (*fn)(void *ctx, const fa4cp_case *c, const char *msg), void *ctx);
void run_mp_close(mp_state *m);

/* ---- run_watch.c */
/* The watchdog's message: "case N (label) WHY: rank R still running (host H:
 * forward iteration 2 of 3, there for 6.1 s) - it is behind; the others:
 * rank 0: <its transport timeout, naming whom it waited for>".  done[r]:
 * rank r returned (its status and msg in res[r]); the rest report progress.
 * Returns the number of ranks named behind. */
int run_watch_behind(const fa4cp_case *c, const world_info *w, const rank_result *res, const int *done, int n,
                     double now_s, const char *why, char *msg, size_t len);
/* 1 after run_local gave up on ranks that never returned (their threads
 * still run): the process must end without cleaning up after the case */
int run_local_abandoned(void);

/* ---- run_judge.c */
void run_judge(const fa4cp_case *c, const world_info *w, const rank_result *rr, int nr, case_outcome *oc);
int run_worse(int a, int b); /* the more severe of two verdicts */
/* Append case c's record to OUTDIR/results.jsonl: 0, or -1 (said on stderr). */
int run_write_json(const char *outdir, const world_info *w, const fa4cp_case *c, const case_outcome *oc,
                   const rank_result *rr, int nr);
/* --resume: the identity of a case (its record's "config", canonical text),
 * from the case or from a record read back; free() them */
char *run_config_key(const fa4cp_case *c);
struct json_t;
char *run_record_config_key(const struct json_t *rec);
/* argv of the run, as given, written into every record (env.argv); copied,
 * kept to the end of the process */
void run_record_argv(int argc, char **argv);
/* The CP ring's bandwidth over the run: add a case's timed p2p steps (every
 * rank); run_ring_bw_print prints "# Avg CP ring bandwidth : X GB/s" over
 * all of them and "# Avg CP inter-node bandwidth : Y GB/s" over the sends
 * that leave a node, each only when there is such a step. */
void run_ring_bw_add(const world_info *w, const fa4cp_case *c, const rank_result *rr, int nr);
void run_ring_bw_print(FILE *f);

#endif
