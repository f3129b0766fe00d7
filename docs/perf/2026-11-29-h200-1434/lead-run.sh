#!/bin/bash
# lead R0: is the (192,128) S8k dense forward's 0.844 (13:37) noise? main's binary, 3 runs, plus the tuning variants
export LD_LIBRARY_PATH=$PWD/../main
if [ "$1" = speed ]; then
  for r in 1 2 3; do timeout 30 ../main/bench_attn --shape 192,8192,0,128 --shape 192,16384,0,128 --shape 128,8192,0 --fwd --variants 0,1073741824,2097152 --iters 10 > $OUT/hd_$r.txt 2>&1; grep -v "^bench" $OUT/hd_$r.txt | tail -12; done
fi
