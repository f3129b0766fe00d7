#!/bin/bash
# d96next run.sh check|speed (cwd = .dev/d96next, $OUT = its own folder; the
# form of /work/main/.dev/round.sh).  Binaries: test_attn, bench_attn (this
# branch, static), bench_attn_main (main's static binary, 6d09793 objects).
# Tuning (NEXT.md's table): 0 = warpgroup 0 DSP (early Dsum loads), warpgroup
# 1 KR (K in registers); 2 = warpgroup 0 main's loop, 1 KR; 4 = DSP in both;
# 6 = main's loop in both; 134217728 = the SS dP^T copy (with DSP).
for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null
export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "$1 t=$(( $(date +%s) - S ))" >> $OUT/times.txt; }
if [ "$1" = check ]; then
  date -u > $OUT/check.start
  # at most 4 processes at once: test_attn chains (1-3), one sanitizer chain (4)
  tb() { FA4CP_CUDA_TUNING=$1 timeout 95 ./test_attn cuda bwd > $OUT/test_bwd_$1.tap 2>&1; echo "rc $?" >> $OUT/test_bwd_$1.tap; el test_bwd_$1; }
  ( tb 0; tb 134217728 ) &
  ( tb 2 ) &
  ( tb 4 ) &
  (
    cs="timeout 60 compute-sanitizer --print-limit 20"
    FA4CP_CUDA_TUNING=0 $cs --tool memcheck ./bench_attn --smoke > $OUT/memcheck_0.txt 2>&1; el memcheck_0
    FA4CP_CUDA_TUNING=0 $cs --tool racecheck ./bench_attn --smoke > $OUT/racecheck_0.txt 2>&1; el racecheck_0
    for t in 0 2 4 134217728; do
      FA4CP_CUDA_TUNING=$t $cs --tool synccheck ./bench_attn --smoke > $OUT/synccheck_$t.txt 2>&1; el synccheck_$t
    done
    FA4CP_CUDA_TUNING=4 $cs --tool racecheck ./bench_attn --smoke > $OUT/racecheck_4.txt 2>&1; el racecheck_4
  ) &
  wait
  for f in $OUT/test_bwd_*.tap; do echo "$f: $(grep -c '^ok' $f) ok, $(grep -c '^not ok' $f) not ok, $(tail -1 $f)"; done
  grep -H "ERROR SUMMARY\|RACECHECK SUMMARY" $OUT/*check_*.txt
  date -u > $OUT/check.end
elif [ "$1" = speed ]; then
  date -u > $OUT/speed.start
  M=./bench_attn_main; [ -x ../main/bench_attn ] && M=../main/bench_attn
  SH="--shape 96,8192,0 --shape 96,8192,1 --shape 96,16384,0 --shape 96,16384,1 --shape 80,8192,0"
  for r in 1 2; do
    timeout 45 $M $SH --variants 0 --iters 10 --json $OUT/main$r.jsonl > $OUT/main$r.txt 2>&1; el main$r
    timeout 45 ./bench_attn $SH --variants 0,4,2,6 --iters 10 --json $OUT/new$r.jsonl > $OUT/new$r.txt 2>&1; el new$r
  done
  cat $OUT/main1.txt $OUT/new1.txt $OUT/main2.txt $OUT/new2.txt | grep -v "^|\|^bench"
  date -u > $OUT/speed.end
else
  echo "usage: run.sh check|speed" >&2; exit 2
fi
