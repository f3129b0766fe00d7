#!/bin/sh
# test_run.sh - fa4cp-run end to end on the CPU (local mode, threads as
# ranks): usage and workload errors, dry run, the smoke job, TAP, JSONL,
# an injected error caught by the sampled check (exit 5), a gate (exit 6).
b=${top_builddir:-.}
s=${top_srcdir:-.}
run="$b/bin/fa4cp-run"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fa4cp-run-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0
t() { # t STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
has() { grep -q -- "$2" "$1"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }

"$run" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "no workload given" && echo 0 || echo 1) "no workload: exit 2 ($rc)"
"$run" --bogus "$s/jobs/smoke.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && echo 0 || echo 1) "unknown option: exit 2 ($rc)"
bad="$s/tests/workloads/bad/30-a2a-p2p-disabled.yaml"
"$run" --dry-run "$bad" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "30-a2a-p2p-disabled.yaml:10:9: cp.comm: cp.comm 'a2a+p2p' is disabled" && echo 0 || echo 1) \
  "a2a+p2p refused with file:line:col, exit 2 ($rc)"
"$run" --dry-run -s run.itres=3 "$s/jobs/smoke.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "did you mean 'run.iters'" && echo 0 || echo 1) "typo in --set: suggestion, exit 2"
"$run" --dry-run "$s/jobs/smoke.yaml" --ranks 2 >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "needs cp.size = 4 ranks but the world has 2" && echo 0 || echo 1) "world too small: exit 2"
"$run" --dry-run "$s/jobs/smoke.yaml" --ranks 4 -o "$tmp/dry" >"$tmp/o" 2>"$tmp/e"; rc=$?
rows=$(grep -c "cp.comm=" "$tmp/o")
t $([ $rc -eq 0 ] && [ "$rows" -eq 6 ] && [ ! -e "$tmp/dry" ] && echo 0 || echo 1) "dry run: 6 cases, no output written ($rc, $rows)"
"$run" --explain "$s/jobs/acceptance.yaml" --ranks 8 >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && has "$tmp/o" "cp rank 3:" && has "$tmp/o" "MiB/rank" && echo 0 || echo 1) \
  "explain the cuda acceptance job without a GPU ($rc)"
est=$(grep -c "estimate per rank: input generation .* s (GPU generator), .* check .* s (" "$tmp/o")
t $([ "$est" -eq 14 ] && echo 0 || echo 1) "--explain estimates generation and check time of each of the 14 cases ($est)"
# head dims: the backend's table decides, per case, without a GPU (issue 20)
cat >"$tmp/dims.yaml" <<'EOF'
version: 1
name: dims
attention: {heads: 4, kv_heads: 2, head_dim: 64, sequences: [64, 32]}
cp: {size: 2}
run: {backend: cuda}
sweep:
  together:
    attention.head_dim: [64, 160, 192]
    attention.head_dim_v: [64, 160, 64]
EOF
"$run" --dry-run --ranks 2 "$tmp/dims.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "case 1 (.*): would be refused: run.backend cuda cannot run it: cuda attention: head_dim 160 with head_dim_v 160 has no" \
    && has "$tmp/e" "case 2 (.*): would be refused: .*head_dim 192 with head_dim_v 64 has no" && ! has "$tmp/e" "case 0 (" \
    && has "$tmp/e" "(64, 64), (80, 80)" && has "$tmp/o" "1 of 3 case(s) valid; 2 would be refused" \
    && has "$tmp/o" "192/64 bf16 .* REFUSED" && echo 0 || echo 1) \
  "dry run: cuda cases with head dims it has no kernel for would be refused, naming the set, exit 2 ($rc)"
"$run" --dry-run --tap --ranks 2 "$tmp/dims.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/o" "^ok 1 - dims case 0" && has "$tmp/o" "^not ok 3 - dims case 2 .* # would be refused: " && echo 0 || echo 1) \
  "dry run --tap: those cases are 'not ok' ($rc)"
"$run" --explain --ranks 2 -b cpu "$tmp/dims.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && has "$tmp/o" "192/64" && has "$tmp/o" "head_dim 192, head_dim_v 64: backend cpu runs it" && echo 0 || echo 1) \
  "explain on cpu: every head dim runs, the table shows 192/64 ($rc)"
# ... and they run: head_dim_v != head_dim through every shape, both checks
cat >"$tmp/mla.yaml" <<'EOF'
version: 1
name: mla
attention: {heads: 4, kv_heads: 2, head_dim: 48, head_dim_v: 32, dtype: fp32, sequences: [61, 30, 17], pad_between_seqs: true}
cp: {size: 2}
run: {backend: cpu, iters: 1, warmup: 0}
sweep:
  cp.comm: [p2p, all_gather, a2a]
  run.check: [full, sampled]
EOF
"$run" --ranks 2 -o "$tmp/mla" "$tmp/mla.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
oks=$(grep -c " OK$" "$tmp/o")
t $([ $rc -eq 0 ] && [ "$oks" -eq 6 ] && has "$tmp/o" "48/32" && has "$tmp/mla/results.jsonl" '"head_dim_v":32' && echo 0 || echo 1) \
  "head_dim 48, head_dim_v 32: p2p, all_gather, a2a pass the full and the sampled check, records say head_dim_v ($rc, $oks OK)"
FA4CP_RUN_INJECT_ERROR=dk "$run" --ranks 2 --no-output -s cp.comm=a2a -s run.check=sampled "$tmp/mla.yaml" >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 5 ] && has "$tmp/o" "in dk exceeds" && echo 0 || echo 1) "head_dim_v 32: an injected dk error is caught, exit 5 ($rc)"

# ---- execution (needs the CP executor in the library)
start=$(date +%s)
"$run" "$s/jobs/smoke.yaml" --ranks 4 -o "$tmp/out" -q >"$tmp/smoke" 2>"$tmp/e"; rc=$?
end=$(date +%s)
if [ $rc -eq 3 ] && has "$tmp/e" "no CP executor"; then
    for what in smoke jsonl report tap sampled inject inject-dk inject-full memory gpu-memory fault hang gate cuda; do skip "$what: this build has no CP executor"; done
    echo "1..$n"
    exit 0
fi
okrows=$(grep -c " OK$" "$tmp/smoke")
t $([ $rc -eq 0 ] && [ "$okrows" -eq 6 ] && echo 0 || echo 1) "smoke --ranks 4: 6 OK cases in $((end - start)) s (exit $rc)"
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/smoke" "$tmp/e"
lines=$(wc -l <"$tmp/out/results.jsonl")
t $([ "$lines" -eq 6 ] && echo 0 || echo 1) "results.jsonl: 6 lines ($lines)"
phases=$(grep '"setup_ms":[0-9]' "$tmp/out/results.jsonl" | grep '"generate_ms":[0-9]' | grep '"timed_total_ms":[0-9]' |
    grep '"check_ms":[0-9]' | grep '"wall_ms":[0-9]' | grep -c '"gpu_share":[0-9]')
t $([ "$phases" -eq 6 ] && has "$tmp/smoke" "wall(s) gpu %" && echo 0 || echo 1) \
  "every record has its phase times and gpu share, the table its wall and gpu % ($phases)"
"$b/bin/fa4cp-report" "$tmp/out" >"$tmp/rep" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && has "$tmp/rep" "6 record(s)" && echo 0 || echo 1) "fa4cp-report reads them back ($rc)"
"$run" "$s/jobs/smoke.yaml" --ranks 4 --tap -n 1 -w 0 -c sampled -o "$tmp/out" >"$tmp/tap" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && has "$tmp/tap" "^1\.\.6$" && [ "$(grep -c '^ok ' "$tmp/tap")" -eq 6 ] && echo 0 || echo 1) \
  "--tap -c sampled: plan and 6 ok ($rc)"
lines=$(wc -l <"$tmp/out/results.jsonl")
t $([ "$lines" -eq 12 ] && echo 0 || echo 1) "a second run appends (12 lines: $lines)"
FA4CP_RUN_INJECT_ERROR=1 "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -w 0 -c sampled -s cp.comm=p2p \
    -s attention.causal=true --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 5 ] && has "$tmp/o" "FAILED" && has "$tmp/e" "sampled check: max relative error" && echo 0 || echo 1) \
  "an injected error turns the case FAILED with exit 5 ($rc)"
FA4CP_RUN_INJECT_ERROR=dk "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -w 0 -c sampled -s cp.comm=a2a \
    -s attention.causal=false --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 5 ] && has "$tmp/e" "in dk exceeds" && echo 0 || echo 1) \
  "an injected dk error is caught by the sampled key rows, exit 5 ($rc)"
FA4CP_RUN_INJECT_ERROR=1 "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -w 0 -c full -s cp.comm=all_gather \
    --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 5 ] && has "$tmp/e" "full check: max relative error" && echo 0 || echo 1) \
  "the full check catches it too, exit 5 ($rc)"
"$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -c off --set attention.sequences=[512M] --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 3 ] && has "$tmp/e" "needs an estimated .* GiB per rank but host memory (MemAvailable per rank) has .* GiB free" \
    && echo 0 || echo 1) "too big for memory: refused before allocation with both numbers, exit 3 ($rc)"
if [ -e "$b/tests/.libs/libfakenvml.so" ]; then
    mkdir -p "$tmp/nvml"
    ln -sf "$(cd "$b/tests/.libs" && pwd)/libfakenvml.so" "$tmp/nvml/libnvidia-ml.so.1"
    CUDA_VISIBLE_DEVICES=0 FAKE_NVML_FREE_MIB=100 LD_LIBRARY_PATH="$tmp/nvml${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$run" "$s/jobs/smoke.yaml" --ranks 4 -b cuda -n 1 --set attention.sequences=[64k] --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
    t $([ $rc -eq 3 ] && has "$tmp/e" "GiB for the 4 rank(s) on GPU 0 (Fake GPU, 0) of .*, which has 0.10 GiB free of 80.00 GiB" \
        && echo 0 || echo 1) "cuda case too big for the GPU (4 ranks share it): refused with both numbers, exit 3 ($rc)"
    [ $rc -eq 3 ] || sed 's/^/# /' "$tmp/e" | head -5
    # a cuda case records the GPU's model and driver (here the stand-in's)
    CUDA_VISIBLE_DEVICES=0 LD_LIBRARY_PATH="$tmp/nvml${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$run" "$s/jobs/smoke.yaml" --ranks 4 -b cuda -n 1 -s cp.comm=p2p -s attention.causal=true -o "$tmp/gpu" \
        >/dev/null 2>&1
    t $(grep -q '"gpu":{"model":"Fake GPU","driver":"999.1-fake"}' "$tmp/gpu/results.jsonl" && echo 0 || echo 1) \
      "a cuda case's record names the GPU model and driver (NVML)"
else
    n=$((n + 1)); echo "ok $n # SKIP the stand-in NVML (tests/libfakenvml.la) was not built"
    n=$((n + 1)); echo "ok $n # SKIP the stand-in NVML (tests/libfakenvml.la) was not built"
fi
# what people grep for later: the command line as given, the revision, the
# versions, the Slurm job and its nodes, the hosts of the ranks' nodes
SLURM_JOB_ID=77 SLURM_JOB_NODELIST='gpu[1-2]' "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -w 0 -c off \
    -s cp.comm=a2a -s attention.causal=false -o "$tmp/env" >/dev/null 2>&1
r="$tmp/env/results.jsonl"
t $(grep -q '"argv":\[".*fa4cp-run",".*smoke.yaml","--ranks","4","-n","1","-w","0","-c","off","-s","cp.comm=a2a"' "$r" \
    && echo 0 || echo 1) "env.argv: the command line as given"
t $(grep -q '"fa4cp":"[0-9.]*","fa4cp_git":"[^"][^"]*"' "$r" && grep -q '"cuda_runtime":' "$r" && grep -q '"nccl":' "$r" \
    && echo 0 || echo 1) "env: fa4cp version, git revision, CUDA and NCCL versions"
t $(grep -q '"slurm_job_id":"77","slurm_job_nodelist":"gpu\[1-2\]","node_hosts":\["[^"]*"\]' "$r" && echo 0 || echo 1) \
  "env: SLURM_JOB_ID, SLURM_JOB_NODELIST and the host of every node"
start=$(date +%s)
FA4CP_RUN_INJECT_FAULT=2 "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
end=$(date +%s)
t $([ $rc -eq 3 ] && has "$tmp/e" "rank 2 failed: injected fault" && [ $((end - start)) -lt 30 ] && echo 0 || echo 1) \
  "a fault on rank 2 ends the job naming it, exit 3, no hang ($rc, $((end - start)) s)"
start=$(date +%s)
FA4CP_RUN_INJECT_HANG=1 "$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -T 1 --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
end=$(date +%s)
t $([ $rc -eq 4 ] && has "$tmp/e" "ran past run.timeout = 1 s: rank 1 still running" && [ $((end - start)) -lt 30 ] \
    && echo 0 || echo 1) "a rank that stops answering: the job ends after run.timeout, exit 4 ($rc, $((end - start)) s)"
"$run" "$s/jobs/smoke.yaml" --ranks 4 -n 1 -w 0 -c off -s gate.fwd_tflops=1e6 --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 6 ] && has "$tmp/o" "BELOW GATE" && echo 0 || echo 1) "below a gate: exit 6 ($rc)"
"$run" "$s/jobs/smoke.yaml" --ranks 4 -b cuda -n 1 --no-output >"$tmp/o" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 3 ] && grep -q "run.backend cuda is not available here\|device CP ops" "$tmp/e" && echo 0 || echo 1) \
  "backend cuda without a usable GPU path: a clear error, exit 3 ($rc)"
echo "1..$n"
