#!/bin/bash
# E1: host cost of the launch path's pieces; the deterministic backward's kv-head sections (least size k, tuning k<<40)
# by ncu; test_attn cuda bwd under k = 4; bench_cp 32k cp 8 (bwd's attribute cached)
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_* hostbench
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
./hostbench; el
for sh in 128,4096,0 128,8192,0 128,8192,1 128,-1,1 128,16384,0; do
  ks="0 2 4 8"; [ $sh = 128,4096,0 ] && ks="0 2 3 4 6 8 16"
  for k in $ks; do tu=$(( k << 40 ))
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --det --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh k=$k (normal, det): $x"; done; done; el
FA4CP_CUDA_TUNING=$(( 4 << 40 )) timeout 200 ./test_attn cuda bwd > $O/a.tap 2>&1; echo "test_attn cuda bwd k=4 rc=$? $(el) ok=$(grep -c '^ok' $O/a.tap) notok=$(grep -c '^not ok' $O/a.tap)"; grep -E "^not ok" $O/a.tap | head -6
timeout 60 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/bench_cp.txt 2>&1; echo "bench_cp rc=$? $(el)"; tail -8 $OUT/bench_cp.txt
