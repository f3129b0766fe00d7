#!/bin/sh
# nccl.sh - the nccl transport on two GPUs of this machine: two processes
# bootstrapped through the Slurm-environment fallback (NCCL_COMM_ID derived
# from a faked step).  Skips without NCCL or with fewer than two GPUs.
B=${top_builddir:-.}/tests/test_world_nccl
[ -x "$B" ] || { echo "1..0 # SKIP built without NCCL"; exit 0; }
g=$("$B" --count-gpus 2>/dev/null || echo 0)
[ "${g:-0}" -ge 2 ] 2>/dev/null || { echo "1..0 # SKIP NCCL communicator tests need two GPUs (found ${g:-0})"; exit 0; }
T=${TMPDIR:-/tmp}/fa4cp-nccl.$$
mkdir -p "$T" || exit 99
trap 'rm -rf "$T"' EXIT
for r in 0 1; do
    env -u CUDA_VISIBLE_DEVICES -u PMIX_NAMESPACE NCCL_NVLS_ENABLE=0 \
        NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-lo}" FA4CP_BOOTSTRAP=slurm SLURM_JOB_ID=$$ SLURM_STEP_ID=0 \
        SLURM_PROCID=$r SLURM_LOCALID=$r SLURM_NODEID=0 SLURM_NTASKS=2 SLURM_STEP_NUM_TASKS=2 \
        SLURM_STEP_NODELIST=localhost SLURM_STEP_TASKS_PER_NODE=2 SLURM_DISTRIBUTION=block \
        timeout -k 5 120 "$B" > "$T/out$r" 2> "$T/err$r" &
    eval "p$r=\$!"
done
wait "$p0"; rc0=$?
wait "$p1"; rc1=$?
grep -v '^1\.\.' "$T/out0"
n=$(grep -c '^ok\|^not ok' "$T/out0")
if [ $rc1 = 0 ] && ! grep -q '^not ok' "$T/out1" && grep -q '^ok' "$T/out1"; then
    echo "ok $((n + 1)) - rank 1 passed its $(grep -c '^ok' "$T/out1") checks"
else
    echo "not ok $((n + 1)) - rank 1 (exit $rc1)"
    sed 's/^/# rank 1: /' "$T/out1" "$T/err1"
fi
[ $rc0 = 0 ] || sed 's/^/# rank 0: /' "$T/err0"
echo "1..$((n + 1))"
[ $rc0 = 0 ] && [ $rc1 = 0 ]
