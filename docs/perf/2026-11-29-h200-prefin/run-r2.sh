#!/bin/bash
# prefin round script (R2, 20:55 UTC; the binaries of branch prefin-fs, i.e. prefin + FS): run.sh check|speed
# (cwd = .dev/prefin, $OUT = own folder); schedcmp: schedcmp.cu here
# The bits as in the round and on prefin-fs (main b06ed90 + prefin); on main the old list
# kernel is 2^33 since it landed:
# tuning 4294967296 (2^32): the old list kernel; 8589934592 (2^33): the old dq_accum zeroing;
# 12884901888: both old (main's paths); 0: the branch's defaults
# bench_attn: built with /work/briefs/bwdev.patch applied to attn_bwd_d128 (host code only; inert without FA4CP_BWD_EV)
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
OLD=12884901888
case "$1" in
check)
  left() { echo $(( 192 - $(date +%s) + S )); } # seconds left of the check's 192
  nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader > $OUT/gpu.txt 2>&1
  ( FA4CP_CUDA_TUNING=0 timeout 150 ./test_attn cuda bwd > $OUT/test_bwd_0.log 2>&1; echo "test_bwd_0 rc=$? $(el)" >> $OUT/rc.txt
    timeout 20 ./schedcmp 400 > $OUT/schedcmp.log 2>&1; echo "schedcmp rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) compute-sanitizer --tool racecheck ./bench_attn --smoke > $OUT/racecheck_0.log 2>&1; echo "racecheck_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=4294967296 timeout 150 ./test_attn cuda bwd > $OUT/test_bwd_2p32.log 2>&1; echo "test_bwd_2p32 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) compute-sanitizer --tool synccheck ./bench_attn --smoke > $OUT/synccheck_0.log 2>&1; echo "synccheck_0 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=1099511627776 timeout $(left) ./test_attn cuda bwd > $OUT/test_bwd_2p40.log 2>&1; echo "test_bwd_2p40 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=8589934592 timeout 150 ./test_attn cuda bwd > $OUT/test_bwd_2p33.log 2>&1; echo "test_bwd_2p33 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) ./test_attn cuda one > $OUT/test_one_0.log 2>&1; echo "test_one_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  ( FA4CP_CUDA_TUNING=0 timeout 100 ./test_cp_gpu > $OUT/test_cp_gpu_0.log 2>&1; echo "test_cp_gpu_0 rc=$? $(el)" >> $OUT/rc.txt
    FA4CP_CUDA_TUNING=0 timeout $(left) compute-sanitizer --tool memcheck ./bench_attn --smoke > $OUT/memcheck_0.log 2>&1; echo "memcheck_0 rc=$? $(el)" >> $OUT/rc.txt ) &
  wait
  for f in $OUT/test_*.log; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(grep -c 'SKIP' $f) skip, $(grep -E '^1\.\.' $f)"; grep '^not ok' $f | head -5; done
  for f in $OUT/*check*.log; do echo "$f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tr '\n' ' ')"; done
  tail -3 $OUT/schedcmp.log
  cat $OUT/rc.txt ;;
speed)
  left() { echo $(( 78 - $(date +%s) + S )); }
  nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > $OUT/gpu.txt 2>&1
  M=../main/bench_attn; B=./bench_attn  # (the events-patched build: BWDEV lines with FA4CP_BWD_EV=1)
  # 1. ncu, the backward's kernels (and the forward's list kernel), S8k causal and S16k dense:
  #    main, branch 0, branch 2^33 (old zeroing), branch 2^40 (FS without the prefetch), interleaved
  for sh in 128,8192,1 128,16384,0; do
    for x in main:0 br:0 br:8589934592 br:1099511627776; do
      [ $(left) -lt 30 ] && break
      w=${x%%:*}; t=${x#*:}; bin=$B; [ $w = main ] && bin=$M
      FA4CP_CUDA_TUNING=$t timeout 12 ncu --clock-control none -k regex:"bwd_|sched" --metrics gpu__time_duration.sum,sm__cycles_elapsed.max $bin --profile --shape $sh > $OUT/ncu_${w}_${t}_$(echo $sh | tr , _).txt 2>&1; echo "ncu $w $t $sh rc=$? $(el)" >> $OUT/rc.txt
    done
  done
  # 2. bench_cp: main, branch, branch with the old zeroing
  [ $(left) -gt 20 ] && { timeout 8 ../main/bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/cp_main.txt 2>&1; echo "cp main rc=$? $(el)" >> $OUT/rc.txt; }
  [ $(left) -gt 14 ] && { timeout 8 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/cp_br.txt 2>&1; echo "cp br rc=$? $(el)" >> $OUT/rc.txt; }
  [ $(left) -gt 10 ] && { FA4CP_CUDA_TUNING=8589934592 timeout 8 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $OUT/cp_br_2p33.txt 2>&1; echo "cp br 2p33 rc=$? $(el)" >> $OUT/rc.txt; }
  # 3. bench_attn: main, then the branch (0, both old paths)
  SH="--shape 128,8192,1 --shape 128,16384,0 --shape 128,32768,1 --shape 128,-1,1 --shape 64,4096,0"
  [ $(left) -gt 8 ] && { timeout $(left) $M $SH --iters 10 > $OUT/main_r1.txt 2>&1; echo "main r1 rc=$? $(el)" >> $OUT/rc.txt; }
  [ $(left) -gt 6 ] && { timeout $(left) $B $SH --iters 10 --variants 0,$OLD > $OUT/br_r1.txt 2>&1; echo "br r1 rc=$? $(el)" >> $OUT/rc.txt; }
  # 4. in-situ kernel times (CUDA events between the four kernels), S8k causal: 0 and both old
  for V in 0 $OLD; do
    [ $(left) -lt 3 ] && break
    FA4CP_BWD_EV=1 FA4CP_CUDA_TUNING=$V timeout $(left) $B --shape 128,8192,1 --iters 10 > $OUT/ev_$V.txt 2>&1; echo "ev $V rc=$? $(el)" >> $OUT/rc.txt
  done
  cat $OUT/rc.txt; for f in $OUT/main_r*.txt $OUT/br_r*.txt; do echo "== $f"; cat $f; done
  for f in $OUT/ev_*.txt; do echo "== $f"; grep BWDEV $f | head -24 | awk '{print $3, $5, $7, $9}' | tr '\n' '|'; echo; done
  for f in $OUT/ncu_*.txt; do echo "== $f"; grep -E 'gpu__time' $f | awk '{print $2, $3}' | tr '\n' ' '; echo; done
  for f in $OUT/cp_*.txt; do echo "== $f"; grep -E '^ +32768|queued' $f; done ;;
esac
