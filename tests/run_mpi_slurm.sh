#!/usr/bin/env bash
# run_mpi_slurm.sh - multi-process runs without GPUs (TAP): the mpi transport
# and fa4cp-run's cpu backend launched by srun --mpi=pmix on real local Slurm
# clusters, started from Debian's packages (tests/slurm/setup-*.sh):
#
#   one node:   the transport table (tests/test_comm_mpi) in 5 tasks;
#               srun -n 4 --mpi=pmix fa4cp-run jobs/smoke.yaml, every case
#               with the errors of fa4cp-run --ranks 4 to the last digit;
#               a task killed (SIGKILL) in the middle of a case;
#   two nodes:  the table again, 4 tasks placed cyclically;
#               srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix fa4cp-run
#               jobs/smoke.yaml (CP groups of 4 across the node boundary)
#               against --ranks 4; a task stopped (SIGSTOP) in the middle
#               of a case.
#
# A fault must end every task within the bound of docs/exit-codes.md
# (run.timeout + 5 s for a stopped task; at once for a dead one), with a
# message naming the rank, and leave the records of the cases that finished
# before it intact.  The faults come from FA4CP_RUN_INJECT_SIGNAL (the task
# sends itself the signal after its forward passes of the case).
#
# Skips, with the reason, when FA4CP_SKIP_SLURM=1, when not root, when the
# build has no mpi transport, or when a cluster cannot be started.  Shares
# tests/slurm.sh's lock; ports 6977/6978 and 6987 (or the next free ones), bridge f4m-br0,
# namespaces f4m-node1/2 on 10.202.0.0/24; stops what it started on every
# exit path.
set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
srcdir=$(cd "$srcdir" && pwd)
builddir=$(cd "${top_builddir:-.}" && pwd)
RUN=$builddir/bin/fa4cp-run
TCM=$builddir/tests/test_comm_mpi
SMOKE=$srcdir/jobs/smoke.yaml
DIR=${FA4CP_SLURM_DIR:-/tmp/fa4cp-slurm}
T0=$(date +%s)

. "$srcdir/tests/slurm/harness.sh"

grep -q '^#define HAVE_MPI 1' "$builddir/config.h" 2>/dev/null ||
    skip_all "this build has no mpi transport (configure --with-mpi; Debian: libopenmpi-dev)"
grep -q '^#define HAVE_PMIX 1' "$builddir/config.h" 2>/dev/null ||
    skip_all "this build has no PMIx bootstrap (multi-process runs need it)"
[ -x "$RUN" ] && [ -x "$TCM" ] || skip_all "fa4cp-run or tests/test_comm_mpi not built"
slurm_can_start "$DIR"

W=$DIR/mpi
rm -rf "$W"
mkdir -p "$W"

# Open MPI: its shared-memory and TCP paths (whatever else is installed);
# sanitizer builds: Open MPI's and libpmix's own allocations are not ours
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export LSAN_OPTIONS="suppressions=$srcdir/tests/mpi_lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# the libtool wrappers may relink on their first run: once, not in 4 tasks at a time
"$RUN" --version >/dev/null 2>&1
"$TCM" --version >/dev/null 2>&1

# a fault run: stderr lines stamped as they come, so that AFTER is the time
# from the injected signal (the rank's own line) to the end of the job
run_fault() { # run_fault OUT ERR CMD... ; sets RC, DT and AFTER (seconds, rounded up)
    local o=$1 e=$2 t0 t_end t_sig
    shift 2
    t0=$(date +%s)
    timeout -k 5 120 "$@" 2>&1 >"$o" | while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done >"$e.ts"
    RC=${PIPESTATUS[0]}
    t_end=$(date +%s.%N)
    DT=$(($(date +%s) - t0))
    sed 's/^[0-9.]* //' "$e.ts" >"$e"
    t_sig=$(awk '/FA4CP_RUN_INJECT_SIGNAL/ {print $1; exit}' "$e.ts")
    AFTER=$(echo "$t_end - ${t_sig:-0}" | bc | awk '{printf "%d", ($1 == int($1)) ? $1 : int($1) + 1}')
}

# the transport table under srun: rank 0's TAP, summed up in one line
table() { # table DESCRIPTION SRUN-ARGS...
    local what=$1
    shift
    run 180 "$W/table.out" "$W/table.err" srun "$@" --mpi=pmix "$TCM"
    local plan nok
    plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$W/table.out")
    nok=$(grep -c '^ok ' "$W/table.out")
    ok "$([ $RC = 0 ] && [ -n "$plan" ] && [ "$nok" = "$plan" ] && [ "$plan" -ge 50 ] && echo 0 || echo 1)" \
        "$what: the transport table, $nok of ${plan:-?} passed in ${DT} s (exit $RC)"
    if [ $RC != 0 ] || [ "$nok" != "$plan" ]; then
        grep -v '^ok ' "$W/table.out" | diag
        tail -n 20 "$W/table.err" | diag
    fi
}

# "case errors" of every record of a results.jsonl: the numbers fa4cp-run printed
errors_of() { # errors_of FILE [MAXCASE]
    LC_ALL=C sed -n 's/.*"case":\([0-9]*\),.*"result":{"status":"\([A-Z ]*\)".*\("max_rel_err":[^}]*}\).*/\1 \2 \3/p' "$1" |
        awk -v m="${2:-999999}" '$1 < m'
}

# the reference: the same cases, ranks as threads of one process
LSAN_OPTIONS="suppressions=$srcdir/tests/slurm/lsan.supp" \
    run 300 "$W/ref.out" "$W/ref.err" "$RUN" "$SMOKE" --ranks 4 --quiet -o "$W/ref"
ok "$([ $RC = 0 ] && echo 0 || echo 1)" "reference: fa4cp-run jobs/smoke.yaml --ranks 4 (exit $RC, ${DT} s)"
[ $RC = 0 ] || diag <"$W/ref.err"
errors_of "$W/ref/results.jsonl" >"$W/ref.errors"


compare() { # compare DESCRIPTION OUTDIR [MAXCASE]: errors of OUTDIR's records (cases < MAXCASE) vs the reference
    local what=$1 dir=$2 max=${3:-999999} n
    errors_of "$dir/results.jsonl" "$max" >"$dir.errors"
    errors_of "$W/ref/results.jsonl" "$max" >"$dir.want"
    n=$(wc -l <"$dir.want")
    ok "$([ "$n" -gt 0 ] && cmp -s "$dir.errors" "$dir.want" && echo 0 || echo 1)" "$what ($n case(s))"
    cmp -s "$dir.errors" "$dir.want" || diff "$dir.want" "$dir.errors" | diag
}


# ------------------------------------------------------------------ one node
C1=$DIR/mpi-cluster1
P1=$(free_port 6977)
export SLURM_LOCAL_DIR=$C1 SLURM_LOCAL_CTLD_PORT=$P1 SLURM_LOCAL_SLURMD_PORT=$((P1 + 1)) SLURM_LOCAL_CPUS=8
STOPS+=("$C1/stop.sh")
if ! bash "$srcdir/tests/slurm/setup-local-slurm.sh" >"$W/setup1.log" 2>&1; then
    tail -n 15 "$W/setup1.log" | diag
    skip_all "could not start a one-node Slurm cluster (see $W/setup1.log)"
fi
echo "# one-node cluster up after $(($(date +%s) - T0)) s"
export SLURM_CONF=$C1/etc/slurm.conf

table "srun -n 5 --mpi=pmix" -n 5

run 300 "$W/mp1.out" "$W/mp1.err" srun -n 4 --mpi=pmix "$RUN" "$SMOKE" --quiet -o "$W/mp1"
ok "$([ $RC = 0 ] && grep -q 'world: 4 rank(s) on 1 node(s), 4 process(es), bootstrap pmix' "$W/mp1.out" && echo 0 || echo 1)" \
    "srun -n 4 --mpi=pmix fa4cp-run jobs/smoke.yaml: 4 processes, PMIx world, exit 0 ($RC, ${DT} s)"
[ $RC = 0 ] || { diag <"$W/mp1.err"; diag <"$W/mp1.out"; }
ok "$([ "$(grep -c '^# fa4cp-run concluded' "$W/mp1.out")" = 1 ] && grep -q 'mpi (one process per rank)' "$W/mp1.out" && echo 0 || echo 1)" \
    "only rank 0 prints, and the header names the mpi transport"
ok "$(grep -q '"procs":4,' "$W/mp1/results.jsonl" && ! grep -q '"procs":1,' "$W/mp1/results.jsonl" && echo 0 || echo 1)" \
    "the records say 4 processes"
compare "one node, 4 processes: every case's errors equal those of --ranks 4 to the last digit" "$W/mp1"

# a task killed in the middle of case 2: the job ends at once, naming it
run_fault "$W/kill.out" "$W/kill.err" env FA4CP_RUN_INJECT_SIGNAL=2:KILL:2 \
    srun -n 4 --mpi=pmix "$RUN" "$SMOKE" --quiet -o "$W/kill"
# (srun ends the step at once: Slurm's PMIx plugin sees the task die; KillWait 5 s)
ok "$([ $RC != 0 ] && [ $RC != 124 ] && [ "$AFTER" -le 15 ] && echo 0 || echo 1)" \
    "rank 2 killed (SIGKILL) in case 2: every task ends within 15 s of it (exit $RC, ${AFTER} s after the kill, ${DT} s in all)"
ok "$(grep -q 'task 2: Killed' "$W/kill.err" && echo 0 || echo 1)" "... the launcher names task 2 (rank 2)"
grep -v 'FA4CP_RUN_INJECT_SIGNAL' "$W/kill.err" | head -n 8 | diag
ok "$([ "$(errors_of "$W/kill/results.jsonl" | wc -l)" = 2 ] && echo 0 || echo 1)" \
    "... cases 0 and 1 have their records, case 2 none"
compare "... and those records are intact (errors of --ranks 4)" "$W/kill" 2

bash "$C1/stop.sh" >/dev/null 2>&1
echo "# one-node tests done after $(($(date +%s) - T0)) s"

# ------------------------------------------------------------------ two emulated nodes
C2=$DIR/mpi-cluster2
export SLURM_2NODE_DIR=$C2 SLURM_2NODE_CTLD_PORT=$(free_port 6987) SLURM_2NODE_BRIDGE=f4m-br0 \
    SLURM_2NODE_NS=f4m SLURM_2NODE_NET=10.202.0 SLURM_2NODE_CPUS=4
STOPS+=("$C2/stop.sh")
netns_ok() { # can this machine make network namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN)?
    ip netns add f4m-probe 2>/dev/null || return 1
    ip netns del f4m-probe 2>/dev/null
    return 0
}
if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null; then
    N=$((N + 1)); echo "ok $N # SKIP two emulated nodes: iproute2 or util-linux (nsenter, unshare) missing"
elif ! netns_ok; then
    N=$((N + 1)); echo "ok $N # SKIP two emulated nodes: cannot create network namespaces here"
elif ! bash "$srcdir/tests/slurm/setup-2node-slurm.sh" >"$W/setup2.log" 2>&1; then
    tail -n 15 "$W/setup2.log" | diag
    ok 1 "two emulated nodes start (see $W/setup2.log)"
else
    echo "# two-node cluster up after $(($(date +%s) - T0)) s"
    export SLURM_CONF=$C2/etc/slurm.conf

    table "srun -N2 -n 4 -m cyclic --mpi=pmix" -N2 --ntasks-per-node=2 -m cyclic

    run 300 "$W/mp2.out" "$W/mp2.err" srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$RUN" "$SMOKE" --quiet -o "$W/mp2"
    ok "$([ $RC = 0 ] && grep -q 'world: 4 rank(s) on 2 node(s), 4 process(es), bootstrap pmix' "$W/mp2.out" &&
        grep -q 'cp 4: 1 group(s), up to 2 node(s) each, 2 inter-node ring hop(s)' "$W/mp2.out" && echo 0 || echo 1)" \
        "srun -N2 --ntasks-per-node=2 -m cyclic: the CP group of 4 spans both nodes (2 ring hops), exit 0 ($RC, ${DT} s)"
    [ $RC = 0 ] || { diag <"$W/mp2.err"; diag <"$W/mp2.out"; }
    compare "two nodes, cyclic: every case's errors equal those of --ranks 4 to the last digit" "$W/mp2"

    # a task stopped in the middle of case 1: its peers time out (run.timeout
    # 10 s), name it, and end the job
    run_fault "$W/stop.out" "$W/stop.err" env FA4CP_RUN_INJECT_SIGNAL=1:STOP:1 \
        srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$RUN" "$SMOKE" --quiet --set run.timeout=10 -o "$W/stop"
    ok "$([ $RC != 0 ] && [ $RC != 124 ] && [ "$AFTER" -le 25 ] && echo 0 || echo 1)" \
        "rank 1 (node2) stopped (SIGSTOP) in case 1: every task ends within run.timeout + 5 s and the launcher's teardown of it (exit $RC, ${AFTER} s after the stop, ${DT} s in all)"
    ok "$(grep -q '^fa4cp: abort: rank [023] on node[12]: case 1 .*(MPI rank 1)' "$W/stop.err" && echo 0 || echo 1)" \
        "... a peer's abort names rank 1 as the one that never answered"
    grep -v 'FA4CP_RUN_INJECT_SIGNAL' "$W/stop.err" | head -n 8 | diag
    ok "$([ "$(errors_of "$W/stop/results.jsonl" | wc -l)" = 1 ] && echo 0 || echo 1)" "... case 0 has its record, case 1 none"
    compare "... and it is intact (errors of --ranks 4)" "$W/stop" 1
    bash "$C2/stop.sh" >/dev/null 2>&1
fi

echo "# total $(($(date +%s) - T0)) s"
echo "1..$N"
[ $FAILS = 0 ]
