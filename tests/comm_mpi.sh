#!/usr/bin/env bash
# comm_mpi.sh - the mpi transport's unit tests (tests/test_comm_mpi: the table
# of tests/comm_table.c) in 5 processes under `mpirun -np 5`.  The same
# program runs under srun --mpi=pmix on the local Slurm clusters in
# tests/run_mpi_slurm.sh.
#
# Skips, with the reason, when the build has no mpi transport or mpirun is
# missing.  As root, Open MPI's mpirun needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM),
# set here for the test only.  FA4CP_MPIRUN overrides the launcher.
set -u
b=${top_builddir:-.}
prog="$(cd "$b" && pwd)/tests/test_comm_mpi"
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

grep -q '^#define HAVE_MPI 1' "$b/config.h" 2>/dev/null ||
    skip_all "this build has no mpi transport (configure --with-mpi; Debian: libopenmpi-dev)"
[ -x "$prog" ] || skip_all "$prog not built"
MPIRUN=${FA4CP_MPIRUN:-$(command -v mpirun)}
[ -n "$MPIRUN" ] || skip_all "mpirun is not installed (Debian: openmpi-bin)"
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# the shared-memory and TCP paths of Open MPI's ob1, whatever else is installed
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
# sanitizer builds: Open MPI's and libpmix's own allocations at exit are not ours
s=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
export LSAN_OPTIONS="suppressions=$s/tests/mpi_lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
"$prog" --version >/dev/null 2>&1 # the libtool wrapper may relink once: not in 5 processes at a time
exec timeout -k 5 300 "$MPIRUN" -np 5 --oversubscribe --bind-to none "$prog"
