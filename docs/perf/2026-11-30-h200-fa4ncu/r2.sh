#!/bin/bash
# round 2 (bwdud): descriptors only (no suspend hint): ncu A/B and full profile of the new kernel
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_*
export LD_LIBRARY_PATH=$PWD; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
M="gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum"
for sh in 128,16384,0 128,8192,1; do for b in main new main new; do
  r=$(timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles|smsp__inst" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu bwd $sh $b: $r"; done; done; el
SEC="--section SpeedOfLight --section ComputeWorkloadAnalysis --section InstructionStats --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --section SourceCounters --section MemoryWorkloadAnalysis"
for sh in 128,16384,0 128,8192,1; do n=$(echo $sh | tr , _)
  timeout 60 ncu --clock-control none $SEC --import-source no -k regex:bwd_ws -c 1 -o /tmp/new_$n ./bench_new --profile --shape $sh > /dev/null 2>&1
  ncu -i /tmp/new_$n.ncu-rep --page details > /tmp/new_$n.details.txt 2>&1
  ncu -i /tmp/new_$n.ncu-rep --page source --csv --print-source sass > /tmp/new_$n.sass.csv 2>&1
done; el
cd /tmp && tar -cJf $O/new.tar.xz new_*.txt new_*.csv; ls -la $O
