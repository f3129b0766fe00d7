/* cp_internal.h - the CP group handle, shared by cp.c (the handle) and cp_exec.c (the executor). */
#ifndef FA4CP_CP_INTERNAL_H
#define FA4CP_CP_INTERNAL_H

#include "comm/comm.h"
#include "cp_config.h"
#include "cp_ops.h"

/* Events per timed step: compute begin/end (call stream), communication
 * begin/end (side stream). */
enum { CP_EV_COMP0, CP_EV_COMP1, CP_EV_COMM0, CP_EV_COMM1, CP_EV_KINDS };

struct fa4cp_cp {
    fa4cp_cp_config cfg;
    fa4cp_comm *comm; /* not owned */
    const cp_ops *ops;
    fa4cp_cp_plan *plan;
    /* device ops: the stream that carries communication beside the compute
     * (created on first use), and the timing events of the last call */
    void *side;
    int timing;
    void *ev[CP_EV_KINDS][FA4CP_CP_MAX_TIMED_STEPS];
    void *ev_call[2];
    int timed_steps;      /* steps recorded in the last call */
    char comm_step[FA4CP_CP_MAX_TIMED_STEPS]; /* which of them exchanged data */
    size_t comm_bytes[FA4CP_CP_MAX_TIMED_STEPS]; /* bytes sent in each step's exchange */
    int timed_backward;   /* what the last timed call was */
    int timed_valid;
    /* the operations the last call ran (fa4cp_cp_last_trace) */
    fa4cp_cp_instr *trace;
    int ntrace, trace_cap, trace_valid;
    fa4cp_cp_progress *progress; /* fa4cp_cp_set_progress: where a call is */
    size_t last_workspace; /* bytes the last call allocated */
};

/* The executor (cp_exec.c). */
fa4cp_status fa4cp_cp_exec(fa4cp_cp *cp, const fa4cp_cp_args *a, int backward);

#endif
