#!/bin/bash
# call A: stash FA4 part 1; conformance of the merged kernels (fwd + bwd branches)
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD
bash ../../.anchors/install.sh
S=$(date +%s); el() { echo $(( $(date +%s) - S )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee $OUT/gpu.txt
date -u +%FT%TZ | tee -a $OUT/gpu.txt
timeout 150 ./test_attn cuda > $OUT/test_attn.txt 2>&1; echo "test_attn rc=$? t=$(el)"; grep -cE "^ok" $OUT/test_attn.txt; grep -E "^not ok|^1\.\." $OUT/test_attn.txt
timeout 60 ./test_cp_gpu small > $OUT/cp.txt 2>&1; echo "cp rc=$? t=$(el)"; grep -cE "^ok" $OUT/cp.txt; grep -E "^not ok|^1\.\." $OUT/cp.txt
