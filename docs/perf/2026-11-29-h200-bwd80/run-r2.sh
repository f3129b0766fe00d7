#!/bin/bash
# bwd80 round script (R2): run.sh check|speed (cwd = .dev/bwd80, $OUT = own folder)
# tuning 0: main's paths; 4: KS (K issued by thread 0 before the __syncthreads, V with the
# first dO, the writer's last wait for the read only); 2: ET (dK/dV by stmatrix + TMA stores);
# 6: both.  bench_attn_st: instrumented (FA4CP_BWD_STAMPS) d128/d64, prints STAMPS lines
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
left() { local l=$(( 190 - $(date +%s) + S )); [ $l -lt 1 ] && l=1; echo $l; }
case "$1" in
check)
  ( FA4CP_CUDA_TUNING=0 timeout 100 ./test_attn cuda bwd > $OUT/test_bwd_0.log 2>&1; echo "test_bwd_0 rc=$? $(el)" >> $OUT/rc-check.txt
    FA4CP_CUDA_TUNING=2 timeout $(left) ./test_attn cuda bwd > $OUT/test_bwd_2.log 2>&1; echo "test_bwd_2 rc=$? $(el)" >> $OUT/rc-check.txt ) &
  ( FA4CP_CUDA_TUNING=6 timeout 160 ./test_attn cuda bwd > $OUT/test_bwd_6.log 2>&1; echo "test_bwd_6 rc=$? $(el)" >> $OUT/rc-check.txt ) &
  ( FA4CP_CUDA_TUNING=6 timeout 90 compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_6.log 2>&1; echo "racecheck_6 rc=$? $(el)" >> $OUT/rc-check.txt
    FA4CP_CUDA_TUNING=6 timeout $(left) compute-sanitizer --tool synccheck ./bench_attn --smoke > $OUT/synccheck_6.log 2>&1; echo "synccheck_6 rc=$? $(el)" >> $OUT/rc-check.txt ) &
  ( FA4CP_CUDA_TUNING=6 timeout 80 ./test_cp_gpu > $OUT/test_cp_gpu_6.log 2>&1; echo "test_cp_gpu_6 rc=$? $(el)" >> $OUT/rc-check.txt
    FA4CP_CUDA_TUNING=6 timeout $(left) compute-sanitizer --tool memcheck ./bench_attn --smoke > $OUT/memcheck_6.log 2>&1; echo "memcheck_6 rc=$? $(el)" >> $OUT/rc-check.txt ) &
  wait
  for f in $OUT/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(grep -c 'SKIP' $f) skip"; grep '^not ok' $f | head -5; done
  for f in $OUT/*check_*.log; do echo "$f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tr '\n' ' ')"; done
  cat $OUT/rc-check.txt ;;
speed)
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > $OUT/gpu-speed.txt 2>&1
  M=../main/bench_attn
  for x in 0:128,8192,1 4:128,8192,1 2:128,8192,1 6:128,8192,1 256:128,8192,1 0:64,4096,0 6:64,4096,0; do
    t=${x%%:*}; sh=${x#*:}
    FA4CP_CUDA_TUNING=$t timeout 12 ./bench_attn_st --profile --shape $sh > $OUT/stamps_t${t}_$(echo $sh | tr , _).txt 2>&1; echo "stamps $t $sh rc=$? $(el)" >> $OUT/rc-speed.txt
  done
  SH="--shape 128,8192,0 --shape 128,8192,1 --shape 128,16384,0 --shape 128,16384,1 --shape 128,32768,1 --shape 128,-1,1 --shape 64,4096,0"
  r=0
  for V in 0,6,2,4 4,2,6,0 6,0,4,2; do
    r=$((r + 1))
    [ $r -gt 1 ] && [ $(( $(date +%s) - S )) -gt 36 ] && break
    timeout 15 $M $SH --iters 10 > $OUT/main_r$r.txt 2>&1; echo "main r$r rc=$? $(el)" >> $OUT/rc-speed.txt
    timeout 30 ./bench_attn $SH --iters 10 --variants $V > $OUT/br_r$r.txt 2>&1; echo "br r$r ($V) rc=$? $(el)" >> $OUT/rc-speed.txt
  done
  for x in 0:128,8192,1 6:128,8192,1 2:128,8192,1 0:128,16384,0 6:128,16384,0 0:64,4096,0 6:64,4096,0; do
    [ $(( $(date +%s) - S )) -gt 72 ] && break
    t=${x%%:*}; sh=${x#*:}; n=ncu_t${t}_$(echo $sh | tr , _).txt
    FA4CP_CUDA_TUNING=$t timeout 8 ncu --clock-control none -k regex:bwd_ws_kernel --metrics gpu__time_duration.sum,sm__cycles_active.avg,smsp__inst_executed.sum ./bench_attn --profile --shape $sh > $OUT/$n 2>&1; echo "ncu $t $sh rc=$? $(el)" >> $OUT/rc-speed.txt
  done
  cat $OUT/rc-speed.txt; for f in $OUT/stamps_*.txt; do echo "== $f"; grep STAMPS $f | tail -1; done
  for f in $OUT/main_r*.txt $OUT/br_r*.txt; do echo "== $f"; grep -E "^\||tuning" $f | cut -c1-120; done
  for f in $OUT/ncu_*.txt; do echo "== $f"; grep -E "gpu__time|cycles_active|inst_exec" $f | cut -c1-110; done ;;
esac
