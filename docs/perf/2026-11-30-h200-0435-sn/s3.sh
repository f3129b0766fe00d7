#!/bin/bash
# S3: SN + SW (the default now, 0) against SLL (2^40: the first LSE float4 before dP^T's issue), SLD (2^41: the
# first Dsum float4 before dP^T's wait) and both, by ncu; test_attn cuda bwd under both
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
L=1099511627776; D=2199023255552; LD=3298534883328
for sh in 128,8192,1 128,16384,0 128,-1,1 128,4096,0; do for r in 1 2; do for tu in 0 $L $D $LD; do
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $tu: $x"; done; done; done; el
FA4CP_CUDA_TUNING=$LD timeout 240 ./test_attn cuda bwd > $O/a.tap 2>&1; echo "test_attn cuda bwd (SLL+SLD) rc=$? $(el) ok=$(grep -c '^ok' $O/a.tap) notok=$(grep -c '^not ok' $O/a.tap)"
