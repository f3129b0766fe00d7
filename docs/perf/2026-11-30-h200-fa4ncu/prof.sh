#!/bin/bash
# ncu of the d128 backward's main kernel: ours and FA4's, S16k dense and S8k causal
cd "$(dirname "$0")"; xz -d -f bench_attn.xz; chmod +x bench_attn
export LD_LIBRARY_PATH=$PWD PYTHONUNBUFFERED=1; O=$OUT
bash ../../.anchors/install.sh || exit 3
export FA4_SITE=/tmp/fa4site
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
SEC="--section SpeedOfLight --section ComputeWorkloadAnalysis --section InstructionStats --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy --section SourceCounters --section MemoryWorkloadAnalysis"
# FA4 JIT warm (compile cache in process only; so profile inside one process)
for sh in 128,16384,0 128,8192,1; do n=$(echo $sh | tr , _)
  timeout 150 ncu --clock-control none $SEC --import-source no -k regex:'[Bb]ackward|bwd' -c 3 -o /tmp/fa4_$n python3 fa4_prof.py $sh 1 > /tmp/fa4_$n.log 2>&1; echo "fa4 $sh rc=$? $(el)"; tail -3 /tmp/fa4_$n.log
  timeout 60 ncu --clock-control none $SEC --import-source no -k regex:bwd_ws -c 1 -o /tmp/our_$n ./bench_attn --profile --shape $sh > /tmp/our_$n.log 2>&1; echo "ours $sh rc=$? $(el)"; tail -2 /tmp/our_$n.log
done
for f in /tmp/fa4_*.ncu-rep /tmp/our_*.ncu-rep; do b=$(basename $f .ncu-rep)
  ncu -i $f --page details > /tmp/$b.details.txt 2>&1
  ncu -i $f --page source --csv --print-source sass > /tmp/$b.sass.csv 2>&1
  echo "$b: $(wc -c < /tmp/$b.details.txt) $(wc -c < /tmp/$b.sass.csv)"
done
cd /tmp && tar -cJf $O/details.tar.xz *.details.txt && tar -cJf $O/sass_16k.tar.xz fa4_128_16384_0.sass.csv our_128_16384_0.sass.csv && tar -cJf $O/sass_8k.tar.xz fa4_128_8192_1.sass.csv our_128_8192_1.sass.csv
ls -la $O; el
grep -E "Duration|Elapsed Cycles|Registers Per|Block Size|Grid Size|Dynamic Shared|Executed Ipc A|Issue Slots Busy|Warp Cycles Per Issued|^  [a-zA-Z_]+.*\(" /tmp/*.details.txt | head -80
