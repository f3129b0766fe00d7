#!/bin/sh
# layout_cli.sh - fa4cp-layout without a launcher: planning mode, local mode,
# the singleton trap from a faked environment, and the exit codes.
L=${top_builddir:-.}/bin/fa4cp-layout
T=${TMPDIR:-/tmp}/fa4cp-layout-cli.$$
mkdir -p "$T" || exit 99
trap 'rm -rf "$T"' EXIT
n=0
fails=0
check() { # check DESCRIPTION WANT_RC CMD...   (stdout -> $T/o, stderr -> $T/e)
    d=$1 want=$2
    shift 2
    env -u SLURM_PROCID -u SLURM_STEP_NUM_TASKS -u SLURM_STEP_ID -u PMIX_NAMESPACE "$@" >"$T/o" 2>"$T/e"
    rc=$?
    n=$((n + 1))
    if [ "$rc" = "$want" ]; then echo "ok $n - $d (exit $rc)"; else
        echo "not ok $n - $d (exit $rc, want $want)"; sed 's/^/# /' "$T/e"; fails=$((fails + 1)); fi
}
has() { # has DESCRIPTION FILE STRING
    n=$((n + 1))
    if grep -qF -- "$3" "$2"; then echo "ok $n - $1"; else
        echo "not ok $n - $1: no '$3' in"; sed 's/^/# /' "$2"; fails=$((fails + 1)); fi
}

check "plan 2x2 cyclic, cp 2, json" 0 "$L" --nodes 2 --tasks-per-node 2 --distribution cyclic --cp 2 --json
has "cyclic groups follow the nodes" "$T/o" '"ring": [0, 2], "nodes": 1, "inter_node_hops": 0'
has "source is the plan" "$T/o" '"source": "plan"'
check "plan 4x8, cp 16, p2p (the issue's example)" 0 "$L" --nodes 4 --tasks-per-node 8 --distribution block --cp 16 --comm p2p
has "cp 16 over 8 tasks a node: 2 nodes, 2 hops a group" "$T/o" '         0      2                2  0 -> 1'
check "plan uneven 3+1, cp 2" 0 "$L" --nodes 2 --tasks-per-node 3,1 --cp 2 --json
has "the odd rank pairs across nodes" "$T/o" '"ring": [2, 3], "nodes": 2, "inter_node_hops": 2'
check "a2a across nodes: a warning, not an error" 0 "$L" --nodes 2 --tasks-per-node 2 --cp 4 --comm a2a
has "the warning gives the cost" "$T/e" "warning: a2a group 0 (ranks 0..) spans 2 nodes: 50%"
check "a2a across nodes, allowed" 0 "$L" --nodes 2 --tasks-per-node 2 --cp 4 --comm a2a --allow-cross-node-a2a
n=$((n + 1)); if [ -s "$T/e" ]; then echo "not ok $n - allowed: no warning"; fails=$((fails + 1)); else echo "ok $n - allowed: no warning"; fi
check "local mode, 4 ranks" 0 "$L" --ranks 4 --cp 2 --json
has "source is local" "$T/o" '"source": "local"'
has "4 ranks" "$T/o" '"world_size": 4'

check "cp that does not divide the world: usage" 2 "$L" --nodes 1 --tasks-per-node 6 --cp 4
has "it says which cp would work" "$T/e" "world size 6 is not divisible by cp = 4: use cp in {1, 2, 3, 6}"
check "a2a+p2p is refused" 2 "$L" --nodes 1 --tasks-per-node 4 --comm a2a+p2p
has "with the reason" "$T/e" "'a2a+p2p' is disabled"
check "unknown option" 2 "$L" --bogus
check "--nodes without --tasks-per-node" 2 "$L" --nodes 2
check "bad --tasks-per-node list" 2 "$L" --nodes 2 --tasks-per-node 3,1,4
check "planned GPU sharing is refused" 2 "$L" --nodes 1 --tasks-per-node 4 --gpus-per-node 2
has "naming both ranks and the GPU" "$T/e" "ranks 0 and 2 on node1 would both use GPU 0"
check "--help" 0 "$L" --help
has "help lists the exit codes" "$T/o" "8 launched by srun without PMIx"

check "a faked 2-task srun step without PMIx: the trap, exit 8" 8 \
    env SLURM_PROCID=1 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 SLURM_NTASKS=2 "$L"
has "it says how to launch with srun" "$T/e" "srun"
echo "1..$n"
[ $fails = 0 ]
