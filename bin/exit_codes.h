/* exit_codes.h - the exit codes of fa4cp-run, fa4cp-layout and fa4cp-report
 * (their manuals list them).  fa4cp-run's are the runner's verdicts;
 * fa4cp-report uses 3 for an output it could not write (or gnuplot failing)
 * and 6 for a case worse than the --baseline. */
#ifndef FA4CP_EXIT_CODES_H
#define FA4CP_EXIT_CODES_H

#include "run/run.h"

enum {
    EXIT_OK = RUN_OK,           /* 0: every case OK */
    EXIT_USAGE = RUN_USAGE,     /* 2: usage or workload error */
    EXIT_RUNTIME = RUN_RUNTIME, /* 3: CUDA, NCCL, PMIx, memory, transport */
    EXIT_TIMEOUT = RUN_TIMEOUT, /* 4: a case ran past run.timeout */
    EXIT_VERIFY = RUN_VERIFY,   /* 5: verification failed */
    EXIT_GATE = RUN_GATE,       /* 6: below a performance gate */
    EXIT_LAUNCH = RUN_LAUNCH    /* 8: fa4cp-run, fa4cp-layout: srun without --mpi=pmix (the singleton trap), every task */
};

#endif
