#!/bin/bash
# profile call: the list kernel's scan (new vs old), conformance of the change, CP step overhead, ncu summaries
cd "$(dirname "$0")"; for f in *.xz old/*.xz; do xz -d -f "$f"; done; chmod +x test_* bench_* old/bench_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ | tee $O/gpu.txt; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a $O/gpu.txt
echo "== test_attn cuda"; timeout 150 ./test_attn cuda > $O/attn.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn.tap)"; grep -E "^not ok|^1\.\." $O/attn.tap | head
echo "== test_cp_gpu"; timeout 100 ./test_cp_gpu > $O/cp.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap)"; grep -E "^not ok|^1\.\." $O/cp.tap | head
for v in old new; do b=./bench_cp; [ $v = old ] && b=old/bench_cp; echo "== bench_cp $v"; timeout 60 $b --tokens 32768 --cp 8 --iters 9 --warmup 2 > $O/bench_cp_$v.txt 2>&1; grep -E "^ +32768" $O/bench_cp_$v.txt; done; el
M="--clock-control none --metrics gpu__time_duration.sum --csv"
for v in old new; do b=./bench_attn; [ $v = old ] && b=old/bench_attn; timeout 60 ncu $M $b --profile --shape 128,4096,1 > $O/ncu_small_$v.csv 2>&1; echo "ncu small $v rc=$?"; grep -E "gpu__time_duration" $O/ncu_small_$v.csv | awk -F'","' '{print $5, $NF}' | cut -c1-120; done; el
SEC="--clock-control none -s 2 -c 1 --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats --section Occupancy"
timeout 90 ncu $SEC -k regex:fwd_ws ./bench_attn --profile --fwd --shape 128,16384,0 > $O/ncu_fwd16k.txt 2>&1; echo "fwd16k rc=$? $(el)"
timeout 90 ncu $SEC -k regex:fwd_ws ./bench_attn --profile --fwd --shape 128,32768,1 > $O/ncu_fwd32kc.txt 2>&1; echo "fwd32kc rc=$? $(el)"
timeout 90 ncu $SEC -k regex:bwd_dkdv ./bench_attn --profile --shape 128,16384,0 > $O/ncu_bwd16k.txt 2>&1; echo "bwd16k rc=$? $(el)"
for f in fwd16k fwd32kc bwd16k; do echo "== $f"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Hit|L1/TEX Hit|Issue Slots Busy|Issued Ipc|Warp Cycles Per Issued|No Eligible|Achieved Occupancy|Stall" $O/ncu_$f.txt | head -14; done
MET="--clock-control none -s 2 -c 1 --metrics smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_membar_per_issue_active.ratio,smsp__average_warps_issue_stalled_sleeping_per_issue_active.ratio,smsp__average_warps_issue_stalled_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,lts__t_sector_hit_rate.pct"
for sh in 128,16384,0 128,32768,1; do timeout 60 ncu $MET -k regex:fwd_ws ./bench_attn --profile --fwd --shape $sh > $O/ncu_met_fwd_$sh.txt 2>&1; echo "met fwd $sh rc=$?"; grep -E "stalled|gmma|hit_rate|ERROR" $O/ncu_met_fwd_$sh.txt | sed "s/smsp__average_warps_issue_stalled_//" | awk '{print $1, $NF}'; done; el
tar czf $OUT/p.tgz -C $O .
