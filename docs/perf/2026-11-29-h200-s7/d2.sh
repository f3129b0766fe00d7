#!/bin/bash
# D2 (19:59 UTC): in-situ per-kernel events of the backward (bwdev.patch, FA4CP_BWD_EV=1; ev_bench_attn),
# and ncu of the main kernel inside bench's loop, without (--cache-control none) and with the cache flush
cd "$(dirname "$0")"; for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x main_bench_attn ev_bench_attn; export LD_LIBRARY_PATH=$PWD
O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ > $O/gpu.txt
for sh in 128_8192_1 128_16384_0 128_32768_1 128_8192_0; do
  a=${sh//_/,}
  FA4CP_BWD_EV=1 timeout 60 ./ev_bench_attn --shape $a --iters 20 > $O/ev_$sh.txt 2>&1; echo "ev $sh $(el)"
done
for sh in 128_8192_1 128_16384_0; do
  a=${sh//_/,}
  timeout 90 ncu --clock-control none --cache-control none -k regex:bwd_ws_kernel --launch-skip 6 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__cycles_elapsed.max ./main_bench_attn --shape $a --iters 10 > $O/ncu_nc_$sh.txt 2>&1; echo "ncu nc $sh $(el)"
  timeout 90 ncu --clock-control none -k regex:bwd_ws_kernel --launch-skip 6 --launch-count 2 --metrics gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,sm__cycles_elapsed.max ./main_bench_attn --shape $a --iters 10 > $O/ncu_fl_$sh.txt 2>&1; echo "ncu flush $sh $(el)"
done
