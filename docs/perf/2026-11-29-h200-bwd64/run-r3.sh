#!/bin/bash
# bwd64 round script: run.sh check|speed (cwd = .dev/bwd64, $OUT = own folder)
# tuning 0: the branch's default (PP + ST + HT at d64's 128-row steps);
# 536870912: the dQ tile handed over whole (= main 9672f9a's code); 8388608: ST alone
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
left() { local l=$(( ${BUDGET:-190} - $(date +%s) + S )); [ $l -lt 5 ] && l=5; echo $l; }
case "$1" in
check)
  BUDGET=190
  nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader > $OUT/gpu.txt 2>&1
  ( FA4CP_CUDA_TUNING=0 timeout 150 ./test_attn cuda bwd > $OUT/test_bwd_0.log 2>&1; echo "test_bwd_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=536870912 timeout 120 ./test_attn cuda bwd > $OUT/test_bwd_536870912.log 2>&1; echo "test_bwd_536870912 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=536870912 timeout $(left) compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_536870912.log 2>&1; echo "racecheck_536870912 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=0 timeout 90 compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_0.log 2>&1; echo "racecheck_0 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) compute-sanitizer --tool synccheck ./bench_attn --smoke > $OUT/synccheck_0.log 2>&1; echo "synccheck_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=0 timeout 80 compute-sanitizer --tool memcheck ./bench_attn --smoke > $OUT/memcheck_0.log 2>&1; echo "memcheck_0 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=8388608 timeout $(left) ./test_attn cuda bwd > $OUT/test_bwd_8388608.log 2>&1; echo "test_bwd_8388608 rc=$? $(el)" >> $OUT/rc.txt ) &
  wait
  for f in $OUT/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(grep -c 'SKIP' $f) skip"; grep '^not ok' $f | head -5; done
  for f in $OUT/*check*.log; do echo "$f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tr '\n' ' ')"; done
  cat $OUT/rc.txt ;;
speed)
  BUDGET=78
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > $OUT/gpu.txt 2>&1
  M=../main/bench_attn
  SH="--shape 64,4096,0 --shape 64,16384,1 --shape 32,8192,0"
  r=0
  for V in 536870912,0 0,536870912 536870912,0; do
    r=$((r + 1))
    [ $r -gt 1 ] && [ $(( $(date +%s) - S )) -gt 30 ] && break
    D=; [ $r = 1 ] && D=--det # (the deterministic backward too, first round)
    timeout 14 $M $SH --iters 10 $D > $OUT/main_r$r.txt 2>&1; echo "main r$r rc=$? $(el)" >> $OUT/rc.txt
    timeout 20 ./bench_attn $SH --iters 10 $D --variants $V > $OUT/br_r$r.txt 2>&1; echo "br r$r ($V) rc=$? $(el)" >> $OUT/rc.txt
  done
  # the main kernel alone, d64 S4k dense and S16k causal: main's binary, the tile whole (536870912), HT (0)
  for x in m:64,4096,0 536870912:64,4096,0 0:64,4096,0 m:64,4096,0 536870912:64,4096,0 0:64,4096,0 536870912:64,16384,1 0:64,16384,1; do
    [ $(( $(date +%s) - S )) -gt 60 ] && break
    t=${x%%:*}; sh=${x#*:}; B=./bench_attn; [ $t = m ] && { B=$M; t=0; n=m; } || n=t$t
    FA4CP_CUDA_TUNING=$t timeout 8 ncu --clock-control none -k regex:bwd_ws_kernel --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_elapsed.max,smsp__inst_executed.sum $B --profile --shape $sh >> $OUT/ncu_${n}_$(echo $sh | tr , _).txt 2>&1; echo "ncu $n $sh rc=$? $(el)" >> $OUT/rc.txt
  done
  # HT's warp states (details only)
  [ $(( $(date +%s) - S )) -lt 62 ] && { FA4CP_CUDA_TUNING=0 timeout $(left) ncu --clock-control none -k regex:bwd_ws_kernel --section WarpStateStats --section SpeedOfLight ./bench_attn --profile --shape 64,4096,0 > $OUT/ncu_sec_t0.txt 2>&1; echo "ncu sec rc=$? $(el)" >> $OUT/rc.txt; }
  cat $OUT/rc.txt; for f in $OUT/*_r*.txt; do echo "== $f"; grep -E "^\||tuning" $f | grep -v "^|  d" | cut -c1-150; done; for f in $OUT/ncu_[mt]*.txt; do echo "== $f"; grep -E "gpu__time|cycles_active" $f | cut -c1-110; done ;;
esac
