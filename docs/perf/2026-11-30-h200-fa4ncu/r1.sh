#!/bin/bash
# round 1 (bwdud): uniform wgmma descriptors in the 80-row backward + try_wait suspend hint
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
( timeout 170 ./test_attn cuda bwd > $O/bwd.tap 2>&1; echo "bwd rc=$? $(el)" > $O/bwd.rc ) &
( timeout 170 ./test_attn cuda fwd > $O/fwd.tap 2>&1; echo "fwd rc=$? $(el)" > $O/fwd.rc ) &
( timeout 170 ./test_attn cuda chain > $O/chain.tap 2>&1; echo "chain rc=$? $(el)" > $O/chain.rc ) &
( timeout 170 ./test_cp_gpu small > $O/cp.tap 2>&1; echo "cp rc=$? $(el)" > $O/cp.rc ) &
for t in memcheck racecheck synccheck; do ( timeout 170 compute-sanitizer --tool $t ./bench_new --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
wait; el
for f in bwd fwd chain cp; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap) skip=$(grep -c '# SKIP' $O/$f.tap)"; grep -E "^not ok|Bail" $O/$f.tap | head -5; done
for t in memcheck racecheck synccheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
# ncu A/B, interleaved: the backward's main kernel (and the forward's at S8k causal)
M="gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum"
for sh in 128,16384,0 128,8192,1 128,-1,1 64,4096,0; do for b in main new main new; do
  r=$(timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles|smsp__inst" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd $sh $b: $r"; done; done; el
for t in 17179869184 0 17179869184 4294967296; do
  r=$(FA4CP_CUDA_TUNING=$t timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_new --profile --shape 128,16384,0 2>&1 | grep -E "sm__cycles|smsp__inst" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd 128,16384,0 new tuning $t: $r"; done; el
for sh in 128,8192,1; do for b in main new main new; do
  r=$(timeout 30 ncu --clock-control none -k regex:fwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles|smsp__inst" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu fwd $sh $b: $r"; done; done; el
for b in main new main new; do echo "== bench $b"; timeout 60 ./bench_$b --shape 128,16384,0 --shape 128,8192,1 --iters 10 2>&1 | grep "^|" | head -8; done; el
