/* run_exec.h - fa4cp-run's per-case execution and verification (private). */
#ifndef FA4CP_RUN_EXEC_H
#define FA4CP_RUN_EXEC_H

#include "fa4cp.h"

enum { ERR_OUT, ERR_LSE, ERR_DQ, ERR_DK, ERR_DV, NERR };
extern const char *const run_err_names[NERR];

/* What one rank measured; gathered on rank 0. */
typedef struct rank_result {
    int status;    /* fa4cp_status of the rank's run (0 = ran) */
    int rank;      /* world rank */
    double fwd_ms, bwd_ms;  /* medians over the timed iterations (-1: not run) */
    /* phase times of the rank (host clock, ms): allocation and the CP
     * context; input generation; warm-up + timed iterations (forward and
     * backward, barriers included); verification */
    double setup_ms, gen_ms, timed_ms, check_ms;
    double err[NERR];       /* relative errors (-1: not checked) */
    long long rows_checked; /* query + key rows compared */
    /* backend cuda: the CP executor's CUDA-event timings of the last timed
     * forward / backward (per ring step for p2p) */
    int timed;
    fa4cp_cp_timing tf, tb;
    char msg[480];
    /* interrupted (SIGINT/SIGTERM/SIGUSR1): the signal, and how many timed
     * iterations each direction completed (the medians are over those) */
    int interrupted, fwd_done, bwd_done;
    /* progress, for the watchdog (written by the rank, read by others with
     * __atomic loads): RUN_PHASE_*, the iteration in it, when it got there */
    int phase, iter;
    double phase_t;
    fa4cp_cp_progress cpp; /* where its CP call is (the executor writes it) */
} rank_result;

enum { RUN_PHASE_START, RUN_PHASE_GEN, RUN_PHASE_WARM_FWD, RUN_PHASE_FWD, RUN_PHASE_WARM_BWD, RUN_PHASE_BWD,
       RUN_PHASE_CHECK, RUN_PHASE_DONE };
/* "forward iteration 2 of 10" for a rank's phase */
void run_phase_text(const fa4cp_case *c, int phase, int iter, char *buf, size_t len);
/* appends ", CP operation 5: sendrecv beside step 2, receiving from CP rank 1"
 * to buf when the rank is inside a CP call (a forward or backward phase) */
void run_cp_progress_text(const fa4cp_cp_progress *p, int phase, char *buf, size_t len);

/* Signals (SIGINT, SIGTERM, SIGUSR1): the runner installs handlers that
 * only note the signal; the ranks stop between two timed iterations (agreed
 * over the transport), the case is recorded INTERRUPTED, the rest NOT RUN.
 * A second signal of the same kind ends the process at once. */
void run_signals_install(void);
int run_stop_signal(void); /* 0, or the signal that asked to stop */

/* Run one case on one rank: generate its shard, time forward (and backward)
 * through the CP executor over `comm`, verify as the case says.  Fills r.
 * inject (tests only): bit 0 corrupts one output element after the timed
 * runs (last CP rank); (inject >> 1) - 1 == world_rank fails this rank before
 * its first CP call.  device: the rank's GPU on backend cuda (-1: world_rank
 * modulo the visible GPUs, for ranks that are threads of one process). */
void run_case_rank(const fa4cp_case *c, fa4cp_comm *comm, int world_rank, int device, int inject, rank_result *r);

/* Ranks that run as threads of this process (host work of each rank uses
 * its share of the cores); default 1. */
void run_exec_host_ranks(int ranks);

/* CUDA devices this process sees (0 without CUDA or without a device). */
int run_visible_gpus(void);

/* 1 when this build can execute cases (the CP executor is linked in). */
int run_exec_available(void);

/* "p2p" -> the CP library's comm type (0 when the executor is absent). */
int run_plan_print(const fa4cp_case *c, int cp_rank, FILE *f);

#endif
