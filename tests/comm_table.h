/* comm_table.h - the transport test table: the same bodies and checks for
 * every transport and every way of running ranks (threads of one process in
 * tests/test_comm, processes under mpirun or srun in tests/test_comm_mpi).
 *
 * For 1..max ranks, with odd sizes: grouped send/recv in several post orders
 * (ring both ways, all pairs, self), random legal orders, all_gather,
 * reduce_scatter (sum), all_to_all, all_reduce (sum, max) in every dtype,
 * barrier - each against a serial computation; then the mistakes: a peer out
 * of range, sizes that disagree, a send that never comes, collectives that
 * disagree - each an error within a bounded time, naming the ranks.
 */
#ifndef FA4CP_COMM_TABLE_H
#define FA4CP_COMM_TABLE_H

#include "fa4cp.h"

/* One rank's part of a test, and what it found. */
typedef struct rank_ctx {
    fa4cp_comm *comm;
    int rank, n;
    int fails; /* mismatches found by this rank */
    char err[512];
    fa4cp_status st;
    double seconds;
    int which; /* scenario */
} rank_ctx;

typedef void (*rank_fn)(rank_ctx *);

/* Run fn on ranks 0..n-1 of a fresh group of the transport (timeout_s bounds
 * its waits), each with its own ctx (rank, n, which set), and give back every
 * rank's ctx in out[0..n-1] (comm NULL) with `seconds` = how long fn took. */
typedef void (*comm_runner)(int n, double timeout_s, rank_fn fn, int which, rank_ctx *out);

/* The whole table over `run`, groups of 1..max_ranks (the mistakes need 3);
 * TAP through tap.h. */
void comm_table(comm_runner run, int max_ranks);

/* The collectives body alone on n ranks with timeout_s: the number of
 * mismatches and errors the ranks found (0: all right). */
int comm_table_collectives(comm_runner run, int n, double timeout_s);

#endif
