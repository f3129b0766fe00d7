/* comm_nccl.h - the nccl transport's constructors for the layers above
 * (the world's NCCL bootstrap makes the communicators, this wraps them). */
#ifndef FA4CP_COMM_NCCL_H
#define FA4CP_COMM_NCCL_H

#include "comm.h"

#ifdef HAVE_NCCL
#include <nccl.h>

/* An fa4cp_comm of the nccl transport over `comm`, which has finished
 * initialising, on CUDA device `device`; every wait is bounded by timeout_s
 * (a watchdog aborts the communicator past it).  Owns comm from here on:
 * destroyed with the fa4cp_comm, also when this fails. */
fa4cp_status fa4cp_nccl_comm_wrap(ncclComm_t comm, int device, double timeout_s, const char *label,
                                  fa4cp_comm **out);
/* Wait for a non-blocking NCCL call on comm (init, split, finalize) that
 * returned r to leave ncclInProgress, at most timeout_s (then comm is
 * aborted: FA4CP_ERR_TIMEOUT); FA4CP_ERR_NCCL with the library's message
 * when it failed.  `label` names the communicator in messages. */
fa4cp_status fa4cp_nccl_settle(ncclComm_t comm, ncclResult_t r, const char *what, const char *label,
                               double timeout_s);
#endif

#endif
