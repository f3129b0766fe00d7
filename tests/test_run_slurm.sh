#!/usr/bin/env bash
# test_run_slurm.sh - fa4cp-run under a real local Slurm cluster:
#   srun -n 4 --mpi=pmix fa4cp-run --dry-run jobs/acceptance.yaml
# must validate every case on every task, print the table once (rank 0) and
# exit 0.  Uses the cluster of SLURM_CONF when one answers; otherwise starts
# a one-node cluster of its own (tests/slurm/setup-local-slurm.sh, ports
# 6957/6958 or the next free ones, as root) and stops it on every exit path.
# Skips, with the reason, when FA4CP_SKIP_SLURM=1 or no cluster can be had.
set -u
s=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
b=${top_builddir:-.}
run="$(cd "$b" && pwd)/bin/fa4cp-run"
job="$(cd "$s" && pwd)/jobs/acceptance.yaml"
. "$s/tests/slurm/harness.sh"

[ "${FA4CP_SKIP_SLURM:-0}" = 1 ] && skip_all "FA4CP_SKIP_SLURM=1"
command -v srun >/dev/null 2>&1 || skip_all "srun is not installed"
[ -x "$run" ] || skip_all "$run not built"
export LSAN_OPTIONS="suppressions=$s/tests/slurm/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fa4cp-slurm-test.XXXXXX")
cleanup() { slurm_cleanup; rm -rf "$tmp"; }
trap cleanup EXIT

if [ -z "${SLURM_CONF:-}" ] || ! timeout 10 sinfo -h >/dev/null 2>&1; then
    DIR=${FA4CP_SLURM_DIR:-/tmp/fa4cp-slurm}
    slurm_can_start "$DIR" # tests/slurm.sh and run_mpi_slurm.sh take the same lock
    C=$DIR/runner
    P=$(free_port 6957)
    export SLURM_LOCAL_DIR=$C SLURM_LOCAL_CTLD_PORT=$P SLURM_LOCAL_SLURMD_PORT=$((P + 1)) SLURM_LOCAL_CPUS=8
    STOPS+=("$C/stop.sh")
    if ! bash "$s/tests/slurm/setup-local-slurm.sh" >"$tmp/setup.log" 2>&1; then
        tail -n 15 "$tmp/setup.log" | sed 's/^/# /'
        skip_all "could not start a one-node Slurm cluster"
    fi
    export SLURM_CONF=$C/etc/slurm.conf
fi

"$run" --version >/dev/null 2>&1 # the libtool wrapper may relink once: not in 4 tasks at a time

timeout -k 5 120 srun -n 4 --mpi=pmix "$run" --dry-run "$job" >"$tmp/o" 2>"$tmp/e"; rc=$?
heads=$(grep -c "^# fa4cp-run " "$tmp/o")
ok $([ $rc -eq 0 ] && echo 0 || echo 1) "srun -n 4 --mpi=pmix fa4cp-run --dry-run jobs/acceptance.yaml: exit 0 ($rc)"
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/e"
ok $([ "$heads" -eq 1 ] && echo 0 || echo 1) "only rank 0 prints ($heads header(s))"
ok $(grep -q "world: 4 rank(s) on 1 node(s), 4 process(es), bootstrap pmix" "$tmp/o" &&
    grep -q "dry run: 14 case(s) valid" "$tmp/o" && echo 0 || echo 1) \
  "a PMIx world of 4 ranks, all 14 cases valid"
timeout -k 5 120 srun -n 3 --mpi=pmix "$run" --dry-run "$job" >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ $rc -eq 2 ] && grep -q "needs cp.size = 4 ranks but the world has 3" "$tmp/e" && echo 0 || echo 1) \
  "3 tasks for CP groups of 4: refused with exit 2 ($rc)"
timeout -k 5 120 srun -n 4 --mpi=pmix "$run" -n 1 "$job" >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ $rc -eq 3 ] && [ "$(grep -c "fa4cp-run: " "$tmp/e")" -ge 1 ] && echo 0 || echo 1) \
  "running the cuda acceptance job without GPUs fails cleanly with exit 3 ($rc)"
# multi-process execution (one rank per process, NCCL): what can be checked without a GPU
smoke="$(cd "$s" && pwd)/jobs/smoke.yaml"
# (Open MPI's own allocations at exit: tests/mpi_lsan.supp, for sanitizer builds)
LSAN_OPTIONS="suppressions=$s/tests/mpi_lsan.supp" timeout -k 5 120 srun -n 2 --mpi=pmix "$run" --no-output -n 1 -w 0 \
    --set cp.size=2 --set cp.comm=p2p "$smoke" >"$tmp/o" 2>"$tmp/e"; rc=$?
if grep -q '^#define HAVE_MPI 1' "$b/config.h" 2>/dev/null; then
    # the cpu backend runs over the mpi transport (tests/run_mpi_slurm.sh has the rest)
    ok $([ $rc -eq 0 ] && grep -q "mpi (one process per rank) transport" "$tmp/o" &&
        grep -q "fa4cp-run concluded: OK" "$tmp/o" && echo 0 || echo 1) \
      "srun -n 2: the cpu backend runs over the mpi transport, exit 0 ($rc)"
    [ $rc -eq 0 ] || { sed 's/^/# /' "$tmp/e"; sed 's/^/# /' "$tmp/o"; }
else
    ok $([ $rc -eq 3 ] && [ "$(grep -c "runs over the mpi transport, and this build of fa4cp has none (configure --with-mpi" "$tmp/e")" -eq 1 ] && echo 0 || echo 1) \
      "srun -n 2, a build without MPI: the cpu backend is refused once, with exit 3 ($rc)"
    [ $rc -eq 3 ] || sed 's/^/# /' "$tmp/e"
fi
timeout -k 5 120 srun -n 2 --mpi=pmix bash -c '"$0" --no-output -n 1 --backend cuda --set cp.size=2 --tap "$1"; echo "task $SLURM_PROCID exit $?" >&2' \
    "$run" "$smoke" >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ "$(grep -c "^task [01] exit 3$" "$tmp/e")" -eq 2 ] && echo 0 || echo 1) \
  "srun -n 2, backend cuda without GPUs: every task ends with exit 3, no hang ($rc)"
ok $([ "$(grep -c "cannot run the cuda cases of this pmix launch of 2 process(es): rank 0 on .*: " "$tmp/e")" -eq 1 ] &&
    [ "$(grep -c "^Bail out! " "$tmp/o")" -eq 1 ] && echo 0 || echo 1) \
  "... with one message naming the rank and why, and one TAP Bail out"
sed 's/^/# /' "$tmp/e"
timeout -k 5 120 env FA4CP_BOOTSTRAP=slurm srun -n 2 "$run" --no-output -n 1 --backend cuda --set cp.size=2 "$smoke" \
    >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ $rc -eq 3 ] && grep -q "launch with srun --mpi=pmix" "$tmp/e" && echo 0 || echo 1) \
  "2 tasks bootstrapped from the Slurm environment: refused (no PMIx exchange) with exit 3 ($rc)"
[ $rc -eq 3 ] || sed 's/^/# /' "$tmp/e"
timeout -k 5 120 srun -n 1 --mpi=pmix "$run" -o "$tmp/res" -n 1 --set cp.size=1 --set cp.comm=p2p "$smoke" >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ $rc -eq 0 ] && grep -q "bootstrap pmix" "$tmp/o" && grep -q "fa4cp-run concluded: OK" "$tmp/o" && echo 0 || echo 1) \
  "srun -n 1 --mpi=pmix: a world of one process runs the cpu backend ($rc)"
[ $rc -eq 0 ] || { sed 's/^/# /' "$tmp/e"; sed 's/^/# /' "$tmp/o"; }
# every process agrees on each case (mp_agree): a passing case's message
# stays empty (it once carried a stray "MemAvailable: ... kB" line), and
# each record has its phase times
lines=$(cat "$tmp/res/results.jsonl" 2>/dev/null | wc -l)
empty=$(grep -c '"status":"OK".*"message":""' "$tmp/res/results.jsonl" 2>/dev/null)
phases=$(grep '"setup_ms":[0-9]' "$tmp/res/results.jsonl" 2>/dev/null | grep '"generate_ms":[0-9]' |
    grep '"timed_total_ms":[0-9]' | grep '"check_ms":[0-9]' | grep -c '"wall_ms":[0-9]')
ok $([ "$lines" -gt 0 ] && [ "$empty" -eq "$lines" ] && [ "$phases" -eq "$lines" ] &&
    ! grep -q MemAvailable "$tmp/res/results.jsonl" && echo 0 || echo 1) \
  "pmix world: $empty of $lines passing records have an empty message, $phases carry the phase times"
# issue 15, finding 4: srun without PMIx is the singleton trap: exit 8 on every
# task (as fa4cp-layout), one message saying how to launch
timeout -k 5 120 srun -n 2 --mpi=none bash -c '"$0" --no-output -n 1 --set cp.size=2 "$1"; echo "task $SLURM_PROCID exit $?" >&2' \
    "$run" "$smoke" >"$tmp/o" 2>"$tmp/e"; rc=$?
ok $([ "$(grep -c "^task [01] exit 8$" "$tmp/e")" -eq 2 ] && [ "$(grep -c "use srun --mpi=pmix" "$tmp/e")" -eq 1 ] &&
    echo 0 || echo 1) "finding 4: srun -n 2 --mpi=none fa4cp-run: every task exits 8, one message says how to launch"
sed 's/^/# /' "$tmp/e"
echo "1..$N"
