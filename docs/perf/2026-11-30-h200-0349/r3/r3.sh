#!/bin/bash
# R3: the deterministic backward at d128 S4k dense (and S8k dense), main d3d4f0a (old) against 46e8f0e (new), by ncu
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_*
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
for sh in 128,4096,0 128,8192,0; do for b in old new old new; do
  r=$(timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_$b --profile --det --shape $sh 2>&1 | grep -E "bwd_ws_kernel<|sm__cycles" | sed -E 's/.*bwd_ws_kernel<[^,]*, 128, 128, ([0-9]+), ([01]), ([01]),.*/[rows \1 det \2 win \3]/; s/.*sm__cycles_elapsed.max[^0-9]*//' | tr '\n' ' ')
  echo "ncu $sh $b: $r"; done; done
