#!/bin/bash
# call 2 (bwd): main's bench_attn and bwd128's interleaved (main, bwd128, main, bwd128),
# --bar and d64 S4k; bwd128's dense shapes with tuning 131072 (the 64-row tile, which
# now issues S^T a step early); ncu of bwd128's kernel (cycles, SourceCounters);
# test_attn cuda bwd.  Everything lands in $OUT/c2.tgz.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o2; mkdir -p $O; S=$(date +%s)
el() { echo "t=$(( $(date +%s) - S ))"; }; fin() { tar czf $OUT/c2.tgz -C $O . ; }; trap fin EXIT
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
for r in 1 2; do
  echo "== round $r main $(date -u +%T)"; ./bench_attn.main --bar --iters 10 > $O/bar_main_$r.txt 2>&1; ./bench_attn.main --shape 64,4096,0 --iters 10 | tail -1 >> $O/bar_main_$r.txt
  echo "== round $r bwd128 $(date -u +%T)"; ./bench_attn --bar --iters 10 > $O/bar_new_$r.txt 2>&1; ./bench_attn --shape 64,4096,0 --iters 10 | tail -1 >> $O/bar_new_$r.txt
  el; paste <(grep -E "^\| +(128|64) " $O/bar_main_$r.txt | awk -F"|" '{print $2,$3,$6,$11}') <(grep -E "^\| +(128|64) " $O/bar_new_$r.txt | awk -F"|" '{print $11}')
done; fin
echo "== tuning 131072 (64-row dense tile)"; ./bench_attn --shape 128,8192,0 --shape 128,16384,0 --shape 128,4096,0 --iters 10 --variants 0,131072 > $O/t131072.txt 2>&1; grep tuning $O/t131072.txt | awk -F"|" '{print $1,$2,$3,$11}'; el
SEC="--clock-control none --import-source no --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section SourceCounters --metrics sm__cycles_elapsed.avg.per_second,smsp__inst_executed.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,smsp__inst_executed_op_shared_st.sum,sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"
for sh in 128,16384,0 128,8192,1; do n=new_${sh//,/_}
  timeout 40 ncu $SEC -k regex:bwd_ws -s 2 -c 1 -o $O/$n ./bench_attn --profile --shape $sh > $O/ncu_$n.log 2>&1; echo "ncu $n rc=$?"
  ncu -i $O/$n.ncu-rep --page raw --csv > $O/$n.raw.csv 2>&1; ncu -i $O/$n.ncu-rep --page details > $O/$n.details.txt 2>&1
  timeout 30 ncu -i $O/$n.ncu-rep --page source --csv --print-source sass > $O/$n.sass.csv 2>&1; rm -f $O/$n.ncu-rep
  grep -E "^\s+(Duration|Elapsed Cycles|Executed Instructions  |No Eligible) " $O/$n.details.txt | awk '{$1=$1};1'; done; el; fin
echo "== test_attn cuda bwd"; timeout 60 ./test_attn cuda bwd > $O/attn_bwd.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn_bwd.tap) notok=$(grep -c '^not ok' $O/attn_bwd.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/attn_bwd.tap | head
