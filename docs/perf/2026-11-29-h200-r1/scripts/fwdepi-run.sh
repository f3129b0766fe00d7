#!/bin/bash
# fwdepi: the forward's TMA-store epilogue (default) against the direct one (1073741824)
export LD_LIBRARY_PATH=$PWD
if [ "$1" = check ]; then
  for f in *.xz; do xz -d -f $f; done; chmod +x ./*
  T() { n=$1; shift; ( timeout 300 env "$@" > $OUT/$n.txt 2>&1; echo "$n rc=$?" > $OUT/$n.rc ) & }
  T tma ./test_attn cuda fwd; T direct FA4CP_CUDA_TUNING=1073741824 ./test_attn cuda fwd
  T alt FA4CP_CUDA_TUNING=4096 ./test_attn cuda fwd; T t8192 FA4CP_CUDA_TUNING=8192 ./test_attn cuda fwd
  T nospec FA4CP_CUDA_TUNING=1048576 ./test_attn cuda fwd; T cp ./test_cp_gpu
  for t in memcheck racecheck synccheck; do T cs-$t compute-sanitizer --tool $t ./bench_attn --smoke; done
  wait; cat $OUT/*.rc
  for n in tma direct alt t8192 nospec cp; do echo "$n ok=$(grep -c '^ok' $OUT/$n.txt) notok=$(grep -c '^not ok' $OUT/$n.txt) skip=$(grep -c '# SKIP' $OUT/$n.txt)"; grep -E '^not ok|Bail' $OUT/$n.txt | head -5; done
  grep -H "ERROR SUMMARY\|RACECHECK SUMMARY" $OUT/cs-*.txt
else
  timeout 60 ./bench_attn --bar --fwd --variants 0,1073741824 --peak 788 --iters 10 --json $OUT/ab.jsonl > $OUT/ab.txt 2>&1; echo "ab rc=$?"
  timeout 40 ../main/bench_attn --bar --fwd --peak 788 --iters 10 --json $OUT/main.jsonl > $OUT/main.txt 2>&1; echo "main rc=$?"
  H=""; for s in 32,8192,0 64,4096,0 96,8192,0 96,16384,1 80,8192,0; do H="$H --shape $s"; done
  timeout 50 ./bench_attn $H --fwd --variants 0,1073741824 --peak 788 --iters 10 --json $OUT/ab_hd.jsonl > $OUT/ab_hd.txt 2>&1; echo "hd rc=$?"
  cat $OUT/ab.txt $OUT/main.txt $OUT/ab_hd.txt
  for s in 128,8192,0 128,16384,1; do timeout 40 ncu --clock-control none -k regex:fwd_ws_kernel -c 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis ./bench_attn --profile --shape $s > $OUT/ncu_$s.txt 2>&1; echo "ncu $s rc=$?"; done
fi
