#!/bin/bash
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x pre now; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv,noheader
for sh in 128,16384,0 128,8192,0 128,8192,1; do for b in pre now pre now; do
  f=$OUT/ncu_${b}_$(echo $sh | tr , _).txt
  timeout 20 ncu --clock-control none -k regex:bwd_ws --metrics gpu__time_duration.sum,sm__cycles_elapsed.max ./$b --profile --shape $sh > $f 2>&1
  echo "$b $sh: $(grep -E 'sm__cycles' $f | awk '{print $3}' | tr '\n' ' ') $(el)"
done; done
