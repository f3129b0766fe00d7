#!/bin/bash
# S2: SN by default (new 0), SN + SW (2^39: the statistics' waits and m0 before dP^T), the old loop (2^38), by ncu;
# then the checks of the default (SN) and test_attn cuda bwd under SW
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
OLD=274877906944; SW=549755813888
for sh in 128,8192,1 128,16384,0 128,-1,1 128,4096,0; do for r in 1 2; do for tu in $OLD 0 $SW; do
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $tu: $x"; done; done; done; el
( timeout 240 ./test_attn cuda > $O/attn.tap 2>&1; echo "test_attn cuda rc=$? $(el)" > $O/attn.rc ) &
( timeout 200 ./test_cp_gpu > $O/cp.tap 2>&1; echo "test_cp_gpu rc=$? $(el)" > $O/cp.rc ) &
( FA4CP_CUDA_TUNING=$SW timeout 240 ./test_attn cuda bwd > $O/attnsw.tap 2>&1; echo "test_attn cuda bwd (SW) rc=$? $(el)" > $O/attnsw.rc ) &
for t in memcheck racecheck synccheck; do ( timeout 200 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
wait; el
for f in attn cp attnsw; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap) skip=$(grep -c '# SKIP' $O/$f.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/$f.tap | head -8; done
for t in memcheck racecheck synccheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
