#!/bin/bash
# verification of main 4c4da35 (hdim + rel merges) on the GPU: CP suite, generator/reference, runner, interruption
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ldd ./fa4cp-run | grep "not found"
echo "== test_cp_gpu"; timeout 100 ./test_cp_gpu > $O/cp.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap)"; grep -E "^not ok|^1\.\.|# SKIP" $O/cp.tap | head
echo "== test_gen_gpu"; timeout 60 ./test_gen_gpu > $O/gen.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/gen.tap)"; grep -E "^not ok|^1\.\." $O/gen.tap | head
echo "== smoke cuda --ranks 4"; timeout 60 ./fa4cp-run -q -b cuda smoke.yaml --ranks 4 -o $O/smoke > $O/smoke.txt 2>&1; echo "rc=$? $(el)"; tail -3 $O/smoke.txt
echo "== inject (want 5, then 0)"; FA4CP_RUN_INJECT_ERROR=1 timeout 60 ./fa4cp-run -q inject.yaml --ranks 2 --no-output > $O/inj.txt 2>&1; echo "inj rc=$?"
timeout 60 ./fa4cp-run -q inject.yaml --ranks 2 --no-output > $O/clean.txt 2>&1; echo "clean rc=$? $(el)"
echo "== acceptance cuda --ranks 4"; /usr/bin/time -f "elapsed %e s" timeout 120 ./fa4cp-run -q acceptance.yaml --ranks 4 -o $O/acc > $O/acc.txt 2> $O/acc.err; echo "rc=$? $(el)"; grep -v "^#   " $O/acc.txt | tail -19; tail -2 $O/acc.err
python3 summary.py $O/acc/results.jsonl 2>&1 | tail -16
echo "== SIGTERM after 9 s (want records kept, non-zero exit)"; timeout -s TERM 9 ./fa4cp-run -q acceptance.yaml --ranks 4 -o $O/int > $O/int.txt 2>&1; echo "rc=$? $(el) records=$(wc -l < $O/int/results.jsonl)"; tail -4 $O/int.txt
echo "== test_attn cuda"; timeout 150 ./test_attn cuda > $O/attn.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn.tap)"; grep -E "^not ok|^1\.\." $O/attn.tap
