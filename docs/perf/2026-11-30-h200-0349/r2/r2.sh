#!/bin/bash
# R2: two variants against main d3d4f0a (bench_old): sl = the statistics warps sleep between try_waits,
# dw = Dsum's wait next to LSE's (before the exponentials); then a stall profile of main's main kernel
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_*
O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
M="gpu__time_duration.sum,sm__cycles_elapsed.max"
for sh in 128,8192,1 128,16384,0 128,-1,1; do for b in old sl dw old sl dw; do
  r=$(timeout 30 ncu --clock-control none -k regex:bwd_ws --metrics $M ./bench_$b --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $b: $r"; done; done; el
SEC="--section SpeedOfLight --section WarpStateStats --section SourceCounters --section InstructionStats"
for sh in 128,16384,0 128,8192,1; do n=$(echo $sh | tr , _)
  timeout 90 ncu --clock-control none $SEC --import-source no -k regex:bwd_ws -c 1 -o /tmp/our_$n ./bench_old --profile --shape $sh > /tmp/our_$n.log 2>&1; echo "prof $sh rc=$? $(el)"
  ncu -i /tmp/our_$n.ncu-rep --page details > /tmp/our_$n.details.txt 2>&1
  ncu -i /tmp/our_$n.ncu-rep --page source --csv --print-source sass > /tmp/our_$n.sass.csv 2>&1
done
cd /tmp && tar -cJf $O/prof.tar.xz our_*.details.txt our_*.sass.csv; ls -la $O; el
grep -E "Duration|Elapsed Cycles|Issue Slots Busy|Warp Cycles Per Issued" /tmp/our_*.details.txt | head -20
