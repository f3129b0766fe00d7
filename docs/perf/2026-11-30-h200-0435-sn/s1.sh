#!/bin/bash
# S1: SN (the next step's S^T issued after dK's wait, tuning 2^38) and SD (S^T and dP^T, 2^39; spills 52 B)
# against main's binary (old) and the new binary's default (new, 0), by ncu; then the checks under SN and SD
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
SN=274877906944; SD=549755813888
for sh in 128,8192,1 128,16384,0 128,-1,1; do for r in 1 2; do for v in old:0 new:$SN new:$SD new:0; do
  b=${v%%:*}; tu=${v#*:}
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $b $tu: $x"; done; done; done; el
for tu in $SN $SD; do
  FA4CP_CUDA_TUNING=$tu timeout 200 ./test_attn cuda bwd > $O/attn.$tu.tap 2>&1; echo "test_attn cuda bwd tuning $tu rc=$? $(el) ok=$(grep -c '^ok' $O/attn.$tu.tap) notok=$(grep -c '^not ok' $O/attn.$tu.tap)"; grep -E "^not ok|Bail" $O/attn.$tu.tap | head -5
done
for t in racecheck synccheck; do FA4CP_CUDA_TUNING=$SN timeout 150 compute-sanitizer --tool $t ./bench_new --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
./bench_new --variants 0,$SN,$SD,0,$SN,$SD --shape 128,8192,1 --shape 128,16384,0 2>&1 | grep -E "tuning|^\|"
el
