#!/bin/bash
# dqv2: DP (80-row dQ^T staged as float2 pairs; 4294967296 = off) + PX (dense 80-row: a quarter of exp2 by polynomial;
# 17179869184 = off; 34359738368 = a half)
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
OFF=4294967296; NOPX=17179869184; PH=34359738368
if [ "$1" = check ]; then
  ( timeout 190 ./test_attn cuda bwd > $O/test_bwd_0.log 2>&1; echo "test_attn cuda bwd 0 rc=$? $(el)" >> $O/rc.txt ) &
  ( FA4CP_CUDA_TUNING=$PH timeout 190 ./test_attn cuda bwd > $O/test_bwd_ph.log 2>&1; echo "test_attn cuda bwd $PH rc=$? $(el)" >> $O/rc.txt ) &
  ( timeout 190 ./test_cp_gpu > $O/test_cp_gpu.log 2>&1; echo "test_cp_gpu rc=$? $(el)" >> $O/rc.txt ) &
  ( for t in memcheck racecheck synccheck; do timeout 60 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.log 2>&1; echo "$t rc=$? $(el)" >> $O/rc.txt; done ) &
  wait
  cat $O/rc.txt; for f in $O/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok"; grep '^not ok' $f | head -5; done
  for t in memcheck racecheck synccheck; do tail -1 $O/$t.log; done
else
  # R2: separate processes, alternating (main, DP+PX, DP, neither), the same sequence of calls in each
  one() { if [ $1 = main ]; then timeout 30 ../main/bench_attn --shape $2 --iters 20 > $O/alt_$1_${2//,/_}_$3.txt 2>&1
          else FA4CP_CUDA_TUNING=$1 timeout 30 ./bench_attn --shape $2 --iters 20 > $O/alt_$1_${2//,/_}_$3.txt 2>&1; fi
          echo "$2 $1 r$3: $(grep -E '^\|' $O/alt_$1_${2//,/_}_$3.txt | tail -1 | awk -F'|' '{print $10, $11}') $(el)"; }
  for r in 1 2 3; do for v in main 0 $NOPX $OFF; do one $v 128,16384,0 $r; done; done
  for r in 1 2; do for v in main 0 $OFF; do one $v 128,8192,1 $r; done; done
  for r in 1 2; do for v in main 0 $NOPX; do one $v 128,8192,0 $r; done; done
fi
