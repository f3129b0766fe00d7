#!/bin/bash
# conditional rescale in the forward: conformance, then A/B (0 = conditional, 8192 = always) per shape, interleaved
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x test_attn bench_attn
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ | tee $O/gpu.txt; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a $O/gpu.txt
echo "== test_attn cuda"; timeout 150 ./test_attn cuda > $O/attn.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn.tap)"; grep -E "^not ok|^1\.\." $O/attn.tap | head
echo "== A/B"; ./bench_attn --bar --fwd --variants 0,8192,0,8192 --iters 20 --json $O/ab_bar.jsonl 2>&1 | tee $O/ab.txt | grep -v "^|  d"; el
H=""; for s in 64,4096,0 96,8192,0 96,16384,1 192,8192,0,128 192,16384,1,128 256,8192,0 256,16384,1; do H="$H --shape $s"; done
./bench_attn $H --fwd --variants 0,8192,0,8192 --iters 20 --json $O/ab_hd.jsonl 2>&1 | tee -a $O/ab.txt | grep -v "^|  d"; el
tar czf $OUT/r.tgz -C $O .
