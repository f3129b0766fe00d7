#!/bin/bash
# bwd128 round script (R3): run.sh check|speed (cwd = .dev/bwd128, $OUT = own folder)
# tuning 0: SP + SI at 80 rows (the branch's default); 128: main's code; 256: SP + SI + EP
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
left() { echo $(( 195 - $(date +%s) + S )); } # seconds left of the check's 195
case "$1" in
check)
  nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader > $OUT/gpu.txt 2>&1
  ( FA4CP_CUDA_TUNING=0 timeout 150 ./test_attn cuda bwd > $OUT/test_bwd_0.log 2>&1; echo "test_bwd_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=256 timeout 120 ./test_attn cuda bwd > $OUT/test_bwd_256.log 2>&1; echo "test_bwd_256 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=33024 timeout $(left) ./test_attn cuda bwd > $OUT/test_bwd_33024.log 2>&1; echo "test_bwd_33024 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=0 timeout 90 compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_0.log 2>&1; echo "racecheck_0 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=256 timeout $(left) compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_256.log 2>&1; echo "racecheck_256 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=256 timeout 100 ./test_cp_gpu > $OUT/test_cp_gpu_256.log 2>&1; echo "test_cp_gpu_256 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=256 timeout $(left) compute-sanitizer --tool memcheck ./bench_attn --smoke > $OUT/memcheck_256.log 2>&1; echo "memcheck_256 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) compute-sanitizer --tool synccheck ./bench_attn --smoke > $OUT/synccheck_0.log 2>&1; echo "synccheck_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  wait
  for f in $OUT/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(grep -c 'SKIP' $f) skip"; grep '^not ok' $f | head -5; done
  for f in $OUT/*check*.log; do echo "$f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tr '\n' ' ')"; done
  cat $OUT/rc.txt ;;
speed)
  # main's binary and this branch's variants in turn per shape, three rounds, the variants' order rotated
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > $OUT/gpu.txt 2>&1
  M=../main/bench_attn
  SH="--shape 128,4096,0 --shape 128,8192,0 --shape 128,8192,1 --shape 128,16384,0 --shape 128,16384,1 --shape 128,32768,1 --shape 128,-1,1 --shape 64,4096,0 --shape 64,16384,1"
  r=0
  for V in 128,0,256 256,128,0 0,256,128; do
    r=$((r + 1))
    [ $r -gt 1 ] && [ $(( $(date +%s) - S )) -gt 45 ] && break
    D=; [ $r = 1 ] && D=--det # (the deterministic backward too, first round)
    timeout 15 $M $SH --iters 10 $D > $OUT/main_r$r.txt 2>&1; echo "main r$r rc=$? $(el)" >> $OUT/rc.txt
    timeout 30 ./bench_attn $SH --iters 10 $D --variants $V > $OUT/br_r$r.txt 2>&1; echo "br r$r ($V) rc=$? $(el)" >> $OUT/rc.txt
  done
  # the main kernel alone at S8k causal and S16k dense: main's code (128) against the default (0)
  for x in 128:128,8192,1 0:128,8192,1 128:128,16384,0 0:128,16384,0; do
    [ $(( $(date +%s) - S )) -gt 70 ] && break
    t=${x%%:*}; sh=${x#*:}; n=ncu_t${t}_$(echo $sh | tr , _).txt
    FA4CP_CUDA_TUNING=$t timeout 10 ncu --clock-control none -k regex:bwd_ws_kernel --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_elapsed.max,smsp__inst_executed.sum ./bench_attn --profile --shape $sh > $OUT/$n 2>&1; echo "ncu $t $sh rc=$? $(el)" >> $OUT/rc.txt
  done
  cat $OUT/rc.txt; for f in $OUT/*_r*.txt; do echo "== $f"; cat $f; done; for f in $OUT/ncu_*.txt; do echo "== $f"; grep -E "bwd_ws_kernel|gpu__time|cycles|inst_exec" $f | cut -c1-110; done ;;
esac
