#!/bin/bash
# D1: the deterministic dQ writer's DW order (0: both planes' reductions after the turn, one completion wait) against
# the old order (2^39), by ncu (the normal main kernel, then the deterministic one); the checks; bench --bar --det
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
OLD=549755813888
for sh in 128,4096,0 128,8192,0 128,-1,1; do for r in 1 2; do for tu in $OLD 0; do
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --det --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $tu (normal, det): $x"; done; done; done; el
timeout 200 ./test_attn cuda bwd > $O/a.tap 2>&1; echo "test_attn cuda bwd rc=$? $(el) ok=$(grep -c '^ok' $O/a.tap) notok=$(grep -c '^not ok' $O/a.tap)"; grep -E "^not ok|determin" $O/a.tap | head -6
for t in racecheck synccheck memcheck; do timeout 150 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
timeout 100 ./bench_attn --bar --det --peak 788 --iters 10 --json $OUT/fa4cp_det.jsonl > $OUT/bench_det.txt 2>&1; echo "bench rc=$? $(el)"; cat $OUT/bench_det.txt
