/* comm_mpi.h - the mpi transport's constructor for the layers above (the
 * world's MPI bootstrap, lib/world/world_mpi.c, initialises MPI and makes the
 * communicators' groups; this wraps them).
 *
 * The transport knows an MPI communicator and the list of its ranks that
 * form the group; never the world table, PMIx or SLURM_*. */
#ifndef FA4CP_COMM_MPI_H
#define FA4CP_COMM_MPI_H

#include "comm.h"

#ifdef HAVE_MPI
#include <mpi.h>

/* A group of n ranks of the MPI communicator `parent`: group rank g is rank
 * members[g] of parent.  Every rank of parent calls it, in the same order as
 * its other comm creations (it duplicates parent with MPI_Comm_idup, waited
 * for at most max(timeout_s, 30 s)); timeout_s bounds every wait of the
 * comm.  A rank that is not in members gets *out = NULL.  label names the group in messages
 * ("cp1"). */
fa4cp_status fa4cp_mpi_comm_new(MPI_Comm parent, int n, const int *members, double timeout_s,
                                const char *label, fa4cp_comm **out);
#endif

#endif
