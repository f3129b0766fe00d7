#!/bin/bash
# R4: PX at 7 of 20 exponential pairs a thread (the tiles i % 3 != 1) against main 46e8f0e (a quarter), by ncu;
# then the new build's checks; stashes FA4 part 1 for call B
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL; O=/tmp/o; mkdir -p $O
bash ../../.anchors/install.sh
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
for sh in 128,8192,1 128,16384,0 128,-1,1; do for b in old new old new; do
  r=$(timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $b: $r"; done; done; el
( timeout 200 ./test_attn cuda > $O/attn.tap 2>&1; echo "test_attn cuda rc=$? $(el)" > $O/attn.rc ) &
( timeout 150 ./test_cp_gpu > $O/cp.tap 2>&1; echo "test_cp_gpu rc=$? $(el)" > $O/cp.rc ) &
for t in memcheck racecheck synccheck; do ( timeout 150 compute-sanitizer --tool $t ./bench_new --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
wait; el
for f in attn cp; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap) skip=$(grep -c '# SKIP' $O/$f.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/$f.tap | head -8; done
for t in memcheck racecheck synccheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
