#!/bin/sh
# run_plan.sh - fa4cp-run --dry-run --nodes N --tasks-per-node M plans a
# cluster it is not on with the same layout engine as fa4cp-layout: the
# layout that --explain prints is fa4cp-layout's for the same topology (8
# nodes x 8 tasks, cp 16; 2 nodes cyclic; uneven 3,1), the header's
# inter-node ring hops are the sum of fa4cp-layout's, and the usage errors.
b=${top_builddir:-.}
RUN=$b/bin/fa4cp-run
L=$b/bin/fa4cp-layout
FA4CP_DATADIR=${top_srcdir:-..}
export FA4CP_DATADIR
unset SLURM_PROCID SLURM_STEP_NUM_TASKS SLURM_STEP_ID PMIX_NAMESPACE
T=${TMPDIR:-/tmp}/fa4cp-run-plan.$$
mkdir -p "$T" || exit 99
trap 'rm -rf "$T"' EXIT
n=0 fails=0
t() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi; }
# the first layout block of --explain, without its "#     " prefix
first_layout() { awk '/^#     # fa4cp-layout/ {on=1} on && /^#   cp rank/ {exit} on && /^#     / {print}' "$1" | sed 's/^#     //'; }
same() { # DESCRIPTION WORKLOAD CP PLAN-ARGS...
    d=$1 wl=$2 cp=$3; shift 3
    "$RUN" --dry-run --explain "$@" "$wl" >"$T/run" 2>"$T/e"; rc=$?
    t "$rc" "fa4cp-run --dry-run --explain $* $wl: exit $rc"
    [ "$rc" = 0 ] || sed 's/^/# /' "$T/e"
    first_layout "$T/run" >"$T/a"
    "$L" "$@" --cp "$cp" >"$T/b" 2>/dev/null
    if [ -s "$T/a" ] && cmp -s "$T/a" "$T/b"; then t 0 "$d: the layout is fa4cp-layout's ($(wc -l <"$T/b") lines)"; else
        t 1 "$d: the layout differs from fa4cp-layout's"; diff "$T/a" "$T/b" | head -10 | sed 's/^/# /'; fi
}
same "8 nodes x 8 tasks, cp 16 (acceptance-internode)" acceptance-internode 16 --nodes 8 --tasks-per-node 8
same "2 nodes x 8 tasks cyclic, cp 16" acceptance-internode 16 --nodes 2 --tasks-per-node 8 --distribution cyclic
same "uneven 3,1 tasks, cp 4 (smoke)" smoke 4 --nodes 2 --tasks-per-node 3,1
# the header's hop count: every CP group's inter-node hops, summed
"$RUN" --dry-run --nodes 8 --tasks-per-node 8 acceptance-internode >"$T/run" 2>&1
"$L" --nodes 8 --tasks-per-node 8 --cp 16 --json >"$T/j"
hops=$(sed -n 's/.*"inter_node_hops": \([0-9]*\).*/\1/p' "$T/j" | awk '{s += $1} END {print s}')
t "$(grep -q "cp 16: 4 group(s), up to 2 node(s) each, $hops inter-node ring hop(s)" "$T/run" && echo 0 || echo 1)" \
    "the header: 4 CP groups of 16 over 2 nodes each, $hops hops as fa4cp-layout counts"
t "$(grep -q '# world: 64 rank(s) on 8 node(s)' "$T/run" && grep -q 'MiB/rank' "$T/run" && echo 0 || echo 1)" \
    "64 planned ranks on 8 nodes, memory per rank"
# usage
"$RUN" --nodes 2 --tasks-per-node 8 acceptance >/dev/null 2>"$T/e"; rc=$?
t "$([ $rc = 2 ] && grep -q 'needs --dry-run (or --explain)' "$T/e" && echo 0 || echo 1)" "--nodes without --dry-run: exit 2, says to add it (exit $rc)"
"$RUN" --dry-run --nodes 2 acceptance >/dev/null 2>"$T/e"; rc=$?
t "$([ $rc = 2 ] && grep -q -- '--nodes N and --tasks-per-node M' "$T/e" && echo 0 || echo 1)" "--nodes without --tasks-per-node: exit 2"
"$RUN" --dry-run --nodes 2 --tasks-per-node 8 --ranks 4 acceptance >/dev/null 2>"$T/e"; rc=$?
t "$([ $rc = 2 ] && echo 0 || echo 1)" "--nodes with --ranks: exit 2"
"$RUN" --dry-run --nodes 1 --tasks-per-node 6 acceptance >/dev/null 2>"$T/e"; rc=$?
t "$([ $rc = 2 ] && grep -q 'cp' "$T/e" && echo 0 || echo 1)" "6 ranks for CP groups of 4: exit 2 ($(head -1 "$T/e"))"
"$RUN" --dry-run --nodes 2 --tasks-per-node 8 --distribution plane acceptance >/dev/null 2>&1; rc=$?
t "$([ $rc = 2 ] && echo 0 || echo 1)" "--distribution plane: exit 2"
echo "1..$n"
[ $fails = 0 ]
