/* cp_internal.h - private declarations shared by lib/cp*.c. */
#ifndef FA4CP_CP_INTERNAL_H
#define FA4CP_CP_INTERNAL_H

#include "comm.h"
#include "cp_ops.h"

struct fa4cp_cp {
    fa4cp_cp_config cfg;
    fa4cp_comm *comm; /* not owned */
    const cp_ops *ops;
    fa4cp_cp_plan *plan;
};

/* The refusal of the shape alone (comm, heads, window), without lengths. */
fa4cp_status fa4cp_cp_check_shape(const fa4cp_cp_config *cfg, int cp_size);

/* The executor (cp_exec.c). */
fa4cp_status fa4cp_cp_exec(fa4cp_cp *cp, const fa4cp_cp_args *a, int backward);

#endif
