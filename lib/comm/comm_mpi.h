/* comm_mpi.h - the "mpi" transport's constructor, for the world layer
 * (world_mpi.c) that owns MPI's initialisation (private).
 *
 * The transport knows an MPI communicator and the list of its ranks that
 * form the group; never the world table, PMIx or SLURM_*. */
#ifndef FA4CP_COMM_MPI_H
#define FA4CP_COMM_MPI_H

#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A group of n ranks of the MPI communicator *parent (an MPI_Comm, passed by
 * address so this header needs no mpi.h): group rank g is rank members[g]
 * of *parent.  Every rank of *parent calls it, in the same order as its
 * other comm creations (it duplicates *parent, MPI_Comm_idup, waited for with
 * timeout_s); a rank that is not in members gets *out = NULL.  label names
 * the group in messages ("cp1"). */
fa4cp_status fa4cp_mpi_comm_new(const void *parent, int n, const int *members, double timeout_s,
                                const char *label, fa4cp_comm **out);

#ifdef __cplusplus
}
#endif

#endif
