#!/bin/bash
# R1 (tl): DP's dQ planes thread-linear (16-byte stores, sequence starts padded to 8) against main 99bf644; tlu = tl + UD in the windowed kernel
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,power.draw --format=csv,noheader
( timeout 150 ./test_attn cuda bwd > $O/bwd.tap 2>&1; echo "bwd rc=$? $(el)" > $O/bwd.rc ) &
( timeout 150 ./test_attn cuda chain > $O/chain.tap 2>&1; echo "chain rc=$? $(el)" > $O/chain.rc ) &
( timeout 150 ./test_cp_gpu small > $O/cp.tap 2>&1; echo "cp rc=$? $(el)" > $O/cp.rc ) &
for t in memcheck racecheck synccheck; do ( timeout 150 compute-sanitizer --tool $t ./bench_tl --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
wait; el
for f in bwd chain cp; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap)"; grep -E "^not ok|Bail" $O/$f.tap | head -5; done
for t in memcheck racecheck synccheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
M="gpu__time_duration.sum,sm__cycles_elapsed.max"
for sh in 128,16384,0 128,8192,1 128,-1,1; do for b in old tl tlu old tl tlu; do
  r=$(timeout 40 ncu --clock-control none -k regex:'bwd_ws|bwd_finish' --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles|gpu__time" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $b: $r"; done; done; el
for b in old tl tlu; do ./bench_$b --shape 128,16384,0 --shape 128,8192,1 --shape 128,-1,1 2>&1 | grep -E "^\|" | head -8 | sed "s/^/$b /"; done; el
