#!/usr/bin/env bash
# slurm.sh - integration test (TAP) of the PMIx bootstrap and fa4cp-layout on a
# real local Slurm cluster started from Debian's packages: one node, then two
# nodes emulated in network namespaces (tests/slurm/setup-*.sh).
#
# Skips, with the reason, when FA4CP_SKIP_SLURM=1, when not root, or when the
# cluster cannot be started (packages missing and not installable, no network
# namespaces).  Stops the clusters it started (only their PIDs, bridge and
# namespaces) on every exit path.
#
# Settings: FA4CP_SLURM_DIR (/tmp/fa4cp-slurm), FA4CP_SLURM_NO_APT=1 (never
# apt-get), ports 6917/6918 (one node) and 6937 (two nodes), or the next
# free ones, bridge f4w-br0,
# namespaces f4w-node1/2 on 10.201.0.0/24, so as not to meet the default
# clusters of shared/slurm-local.
set -u

srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${top_builddir:-.}
LAYOUT=$(cd "$builddir" && pwd)/bin/fa4cp-layout
DIR=${FA4CP_SLURM_DIR:-/tmp/fa4cp-slurm}
T0=$(date +%s)

. "$srcdir/tests/slurm/harness.sh"
[ -x "$LAYOUT" ] || skip_all "$LAYOUT not built"
slurm_can_start "$DIR"

# sanitizer builds: libpmix's own small leaks are not ours
export LSAN_OPTIONS="suppressions=$srcdir/tests/slurm/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# the libtool wrapper may relink on its first run: do it once, not in 4 tasks at a time
V=$("$LAYOUT" --version 2>&1) || skip_all "$LAYOUT --version failed"
case $V in *"pmix yes"*) ;; *) skip_all "built without PMIx ($V)";; esac

# JSON field of the line of rank R: field R NAME < file
field() { grep "\"rank\": $1, " | head -1 | sed -n "s/.*\"$2\": \\(\"[^\"]*\"\\|[-0-9]*\\).*/\\1/p" | tr -d '"'; }

# ------------------------------------------------------------------ one node
C1=$DIR/cluster1
P1=$(free_port 6917)
export SLURM_LOCAL_DIR=$C1 SLURM_LOCAL_CTLD_PORT=$P1 SLURM_LOCAL_SLURMD_PORT=$((P1 + 1)) SLURM_LOCAL_CPUS=8
STOPS+=("$C1/stop.sh")
if ! bash "$srcdir/tests/slurm/setup-local-slurm.sh" >"$DIR/setup1.log" 2>&1; then
    tail -n 15 "$DIR/setup1.log" | diag
    skip_all "could not start a one-node Slurm cluster (see $DIR/setup1.log)"
fi
echo "# one-node cluster up after $(($(date +%s) - T0)) s"
export SLURM_CONF=$C1/etc/slurm.conf
O=$DIR/out
E=$DIR/err

run 60 "$O" "$E" srun -n 4 --mpi=pmix "$LAYOUT" --json --cp 2 --check-nccl-id
ok $RC "srun -n 4 --mpi=pmix fa4cp-layout --json exits 0 (got $RC)"
[ $RC = 0 ] || diag < "$E"
ok "$([ "$(grep -c '"world_size"' "$O")" = 1 ] && echo 0 || echo 1)" "only rank 0 prints"
ok "$(grep -q '"source": "pmix"' "$O" && grep -q '"world_size": 4,' "$O" && echo 0 || echo 1)" \
    "the world comes from PMIx and has 4 ranks"
good=0
for r in 0 1 2 3; do
    [ "$(field $r local_rank < "$O")" = "$r" ] && [ "$(field $r node < "$O")" = 0 ] || good=1
    [ "$(field $r cp_group < "$O")" = $((r / 2)) ] && [ "$(field $r cp_rank < "$O")" = $((r % 2)) ] || good=1
    [ "$(field $r dp_group < "$O")" = $((r % 2)) ] || good=1
done
ok $good "ranks, local ranks and groups of one node"
[ $good = 0 ] || diag < "$O"
ok "$(grep -q '"ring": \[0, 1\], "nodes": 1, "inter_node_hops": 0' "$O" && echo 0 || echo 1)" \
    "CP group 0 is the ring 0 -> 1 with no inter-node hop"
ok "$(grep -q '"nccl_id": {"bytes": 128, .*"ranks": 4, "agree": true}' "$O" && echo 0 || echo 1)" \
    "rank 0's NCCL unique id reached every rank through PMIx ($(sed -n 's/.*"from": "\([^"]*\)".*/\1/p' "$O"))"

# the singleton trap: srun without --mpi=pmix (MpiDefault=none)
run 60 "$O" "$E" srun -n 2 "$LAYOUT" --json
ok "$([ $RC = 8 ] && echo 0 || echo 1)" "srun -n 2 without --mpi=pmix exits 8 (got $RC)"
n=$(grep -c 'launched by srun without PMIx: use srun --mpi=pmix (srun --mpi=list shows what this cluster offers)' "$E")
ok "$([ "$n" = 2 ] && echo 0 || echo 1)" "every task says how to launch ($n of 2)"
[ "$n" = 2 ] || diag < "$E"
ok "$([ ! -s "$O" ] && echo 0 || echo 1)" "and nothing is printed as if it were a world of 1"

# a rank that exits before the exchange: Slurm's PMIx plugin sees it and kills the step,
# so the job ends at once with a message naming the task
t=$(date +%s)
FA4CP_TEST_EXIT_RANK=1 FA4CP_BOOTSTRAP_TIMEOUT=5 run 60 "$O" "$E" srun -n 4 --mpi=pmix "$LAYOUT"
dt=$(($(date +%s) - t))
ok "$([ $RC != 0 ] && [ $RC != 124 ] && echo 0 || echo 1)" "a rank exiting before the exchange fails the job (exit $RC, ${dt} s)"
ok "$([ $dt -le 15 ] && echo 0 || echo 1)" "within the timeout (5 s; took ${dt} s)"
ok "$(grep -q 'rank 1 exits before the exchange' "$E" && grep -q 'task 1: Exited with exit code 1' "$E" && echo 0 || echo 1)" \
    "the messages name rank 1"
grep -q 'task 1: Exited' "$E" || diag < "$E"

# a rank that hangs before the exchange: the others time out, name it, and abort the job
t=$(date +%s)
FA4CP_TEST_STALL_RANK=1 FA4CP_BOOTSTRAP_TIMEOUT=5 run 60 "$O" "$E" srun -n 4 --mpi=pmix "$LAYOUT"
dt=$(($(date +%s) - t))
ok "$([ $RC != 0 ] && [ $RC != 124 ] && echo 0 || echo 1)" "a rank hung before the exchange fails the job (exit $RC, ${dt} s)"
ok "$([ $dt -le 30 ] && echo 0 || echo 1)" "within the timeout (5 s + probing; took ${dt} s)"
ok "$(grep -q 'rank 1 (localhost) never arrived' "$E" && echo 0 || echo 1)" "the error names rank 1 and its host"
grep -q 'never arrived' "$E" || diag < "$E"

# issue 15, finding 5: a task killed before PMIx_Init, or during the first
# exchange (after its Put): the others name it and end within the bootstrap
# timeout (the fence fails at once, or times out)
for when in before during; do
    t=$(date +%s)
    FA4CP_TEST_KILL_RANK=1:$when FA4CP_BOOTSTRAP_TIMEOUT=5 run 60 "$O" "$E" srun -n 4 --mpi=pmix "$LAYOUT"
    dt=$(($(date +%s) - t))
    ok "$([ $RC != 0 ] && [ $RC != 124 ] && [ $dt -le 20 ] && echo 0 || echo 1)" \
        "finding 5: rank 1 killed $when the exchange: the job fails within the bootstrap timeout (exit $RC, ${dt} s)"
    if [ $when = before ]; then want='rank 1 (localhost) never arrived'; else want='rank 1 (localhost, pid [0-9]*) died during the exchange'; fi
    # (srun may force-terminate the step first; then it names the task itself)
    ok "$({ grep -q "bootstrap failed: rank [023]: PMIx exchange 'fa4cp.0' .*$want" "$E" ||
            { grep -q 'task 1: Killed' "$E" && grep -q 'Force Terminated' "$E"; }; } && echo 0 || echo 1)" \
        "finding 5: ... the others (or srun, when it ends the step first) name rank 1: '$want'"
    grep -q "$want" "$E" || diag < "$E"
done

# the Slurm-environment fallback, asked for explicitly
run 60 "$O" "$E" env FA4CP_BOOTSTRAP=slurm srun -n 2 "$LAYOUT" --json --cp 2
ok "$([ $RC = 0 ] && grep -q '"source": "slurm"' "$O" && grep -q '"ring": \[0, 1\]' "$O" && echo 0 || echo 1)" \
    "FA4CP_BOOTSTRAP=slurm rebuilds the table from SLURM_* (exit $RC)"
[ $RC = 0 ] || diag < "$E"

bash "$C1/stop.sh" >/dev/null 2>&1
echo "# one-node tests done after $(($(date +%s) - T0)) s"

# ------------------------------------------------------------------ two emulated nodes
C2=$DIR/cluster2
export SLURM_2NODE_DIR=$C2 SLURM_2NODE_CTLD_PORT=$(free_port 6937) SLURM_2NODE_BRIDGE=f4w-br0 \
    SLURM_2NODE_NS=f4w SLURM_2NODE_NET=10.201.0 SLURM_2NODE_CPUS=4
STOPS+=("$C2/stop.sh")
netns_ok() {   # can this machine make network namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN)?
    ip netns add f4w-probe 2>/dev/null || return 1
    ip netns del f4w-probe 2>/dev/null
    return 0
}
skip_one() { N=$((N + 1)); echo "ok $N # SKIP $*"; }
if ! command -v ip >/dev/null || ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null; then
    skip_one "two emulated nodes: iproute2 or util-linux (nsenter, unshare) missing"
elif ! netns_ok; then
    skip_one "two emulated nodes: cannot create network namespaces here (ip netns add failed)"
elif ! bash "$srcdir/tests/slurm/setup-2node-slurm.sh" >"$DIR/setup2.log" 2>&1; then
    tail -n 15 "$DIR/setup2.log" | diag
    ok 1 "two emulated nodes start (see $DIR/setup2.log)"
else
    echo "# two-node cluster up after $(($(date +%s) - T0)) s"
    export SLURM_CONF=$C2/etc/slurm.conf
    run 60 "$O" "$E" srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$LAYOUT" --json --cp 2
    ok $RC "srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix fa4cp-layout exits 0 (got $RC)"
    [ $RC = 0 ] || diag < "$E"
    good=0
    for r in 0 1 2 3; do
        [ "$(field $r node < "$O")" = $((r % 2)) ] && [ "$(field $r host < "$O")" = "node$((r % 2 + 1))" ] \
            && [ "$(field $r local_rank < "$O")" = $((r / 2)) ] || good=1
    done
    ok $good "cyclic: ranks 0,2 on node1 and 1,3 on node2 (from PMIx, not assumed)"
    ok "$(grep -q '"ring": \[0, 2\], "nodes": 1, "inter_node_hops": 0' "$O" &&
        grep -q '"ring": \[1, 3\], "nodes": 1, "inter_node_hops": 0' "$O" && echo 0 || echo 1)" \
        "CP groups follow the physical nodes ({0,2} and {1,3}), not the rank numbers"
    [ $good = 0 ] || diag < "$O"
    ok "$(grep -q '"ranks": \[0, 1\]' "$O" && grep -q '"ranks": \[2, 3\]' "$O" && echo 0 || echo 1)" \
        "DP groups pair equal CP ranks across nodes"

    run 60 "$O" "$E" srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$LAYOUT" --json --cp 4 --comm a2a
    ok "$([ $RC = 0 ] && grep -q '"ring": \[0, 2, 1, 3\], "nodes": 2, "inter_node_hops": 2' "$O" && echo 0 || echo 1)" \
        "cp 4 over 2 nodes: the ring visits each node's ranks consecutively, 2 hops"
    ok "$(grep -q 'warning: a2a group 0 .* spans 2 nodes: 50%' "$E" && echo 0 || echo 1)" \
        "a2a across nodes warns with its cost"

    run 60 "$O" "$E" srun -N2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$LAYOUT" --check-nccl-id --json --cp 2
    ok "$([ $RC = 0 ] && grep -q '"agree": true' "$O" && echo 0 || echo 1)" \
        "the NCCL id crosses nodes through PMIx (exit $RC)"

    run 60 "$O" "$E" env FA4CP_BOOTSTRAP=slurm srun -N2 --ntasks-per-node=2 -m cyclic "$LAYOUT" --json --cp 2
    ok "$([ $RC = 0 ] && grep -q '"ring": \[0, 2\]' "$O" && grep -q '"host": "node2"' "$O" && echo 0 || echo 1)" \
        "the Slurm-environment fallback rebuilds the cyclic placement on 2 nodes (exit $RC)"
    [ $RC = 0 ] || diag < "$E"

    # the example batch job (jobs/layout.sbatch), on this cluster without GPUs
    J=$DIR/job
    rm -rf "$J" && mkdir -p "$J"
    (cd "$J" && FA4CP_LAYOUT=$LAYOUT timeout -k 5 90 sbatch -W -N2 --ntasks-per-node=2 \
        --gpus-per-node=0 "$(cd "$builddir" && pwd)/jobs/layout.sbatch" --cp 2 >"$J/sbatch.out" 2>&1)
    RC=$?
    ok "$([ $RC = 0 ] && grep -q 'from pmix' "$J"/fa4cp-layout-*.out && grep -q '"agree": true' "$J"/fa4cp-layout-*.out \
        && grep -q '"world_size": 4' "$J"/fa4cp-layout-*.json && echo 0 || echo 1)" \
        "jobs/layout.sbatch runs fa4cp-layout under sbatch (exit $RC)"
    [ $RC = 0 ] || cat "$J"/* 2>/dev/null | diag
    bash "$C2/stop.sh" >/dev/null 2>&1
fi

echo "# total $(($(date +%s) - T0)) s"
echo "1..$N"
[ $FAILS = 0 ]
