#!/bin/bash
# round 4 (bwdud): DP's dQ tile in two planes, one per warpgroup, each with its own barrier pair and bulk reduction
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
( timeout 120 ./test_attn cuda bwd > $O/bwd.tap 2>&1; echo "bwd rc=$? $(el)" > $O/bwd.rc ) &
( timeout 120 ./test_attn cuda chain > $O/chain.tap 2>&1; echo "chain rc=$? $(el)" > $O/chain.rc ) &
( timeout 120 ./test_cp_gpu small > $O/cp.tap 2>&1; echo "cp rc=$? $(el)" > $O/cp.rc ) &
for t in memcheck racecheck synccheck; do ( timeout 120 compute-sanitizer --tool $t ./bench_new --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
wait; el
for f in bwd chain cp; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap)"; grep -E "^not ok|Bail" $O/$f.tap | head -5; done
for t in memcheck racecheck synccheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
M="gpu__time_duration.sum,sm__cycles_elapsed.max"
for sh in 128,16384,0 128,8192,1 128,-1,1; do for b in old new old new; do
  r=$(timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd $sh $b: $r"; done; done; el
for t in 4294967296 0; do
  r=$(FA4CP_CUDA_TUNING=$t timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_new --profile --shape 128,16384,0 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd 128,16384,0 new tuning $t: $r"; done; el
