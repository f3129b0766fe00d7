#!/bin/bash
# lead (cpcarry) early check: run.sh check|speed (cwd .dev/lead, $OUT)
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
case "$1" in
check)
  nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader > $OUT/gpu.txt 2>&1
  ( timeout 150 ./test_attn cuda chain > $OUT/test_chain.log 2>&1; echo "chain rc=$? $(el)" >> $OUT/rc.txt
    timeout 100 ./test_attn cuda bwd > $OUT/test_bwd.log 2>&1; echo "bwd rc=$? $(el)" >> $OUT/rc.txt ) &
  ( timeout 150 ./test_cp_gpu > $OUT/test_cp_gpu.log 2>&1; echo "cp_gpu rc=$? $(el)" >> $OUT/rc.txt ) &
  ( timeout 200 compute-sanitizer --tool memcheck ./test_cp_gpu small > $OUT/memcheck_cp.log 2>&1; echo "memcheck cp rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=0 timeout 120 compute-sanitizer --tool racecheck ./test_attn cuda chain > $OUT/racecheck_chain.log 2>&1; echo "racecheck chain rc=$? $(el)" >> $OUT/rc.txt ) &
  wait
  for f in $OUT/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(grep -E '^1\.\.' $f)"; grep -A3 '^not ok' $f | head -12; done
  for f in $OUT/*check*.log; do echo "$f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tr '\n' ' ')"; tail -3 $f; done
  cat $OUT/rc.txt ;;
speed)
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > $OUT/gpu.txt 2>&1
  for i in 1 2; do
    timeout 40 ../main/bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/cp_main_$i.txt 2>&1; echo "cp main $i rc=$? $(el)" >> $OUT/rc.txt
    timeout 40 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/cp_new_$i.txt 2>&1; echo "cp new $i rc=$? $(el)" >> $OUT/rc.txt
  done
  cat $OUT/rc.txt; for f in $OUT/cp_*.txt; do echo "== $f"; grep -vE '^# bench' $f; done ;;
esac
