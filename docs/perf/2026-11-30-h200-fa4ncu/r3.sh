#!/bin/bash
# round 3 (bwdud): uniform descriptors (rows loop incl. dq_gemm): 80- and 64-row causal A/B, checks
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
( timeout 120 ./test_attn cuda bwd > $O/bwd.tap 2>&1; echo "bwd rc=$? $(el)" > $O/bwd.rc ) &
( FA4CP_CUDA_TUNING=4194304 timeout 120 ./test_attn cuda bwd > $O/bwd64.tap 2>&1; echo "bwd 4194304 rc=$? $(el)" > $O/bwd64.rc ) &
( timeout 120 compute-sanitizer --tool racecheck ./bench_new --smoke > $O/race.txt 2>&1; echo "racecheck rc=$? $(el)" > $O/race.rc ) &
wait; el
for f in bwd bwd64; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap)"; grep -E "^not ok|Bail" $O/$f.tap | head -5; done
cat $O/race.rc; grep -E "RACECHECK SUMMARY" $O/race.txt | tail -1
M="gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum"
for sh in 128,8192,1 128,-1,1 128,16384,1; do for t in 0 4194304; do for b in main new main new; do
  r=$(FA4CP_CUDA_TUNING=$t timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles|smsp__inst" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd $sh t=$t $b: $r"; done; done; done; el
