#!/bin/bash
# call B (same warm machine): assemble FA4, then fa4cp and the anchors in one process order
cd "$(dirname "$0")"; export LD_LIBRARY_PATH=$PWD
bash ../../.anchors/install.sh || exit 3
export FA4_SITE=/tmp/fa4site PYTHONUNBUFFERED=1
S=$(date +%s); el() { echo $(( $(date +%s) - S )); }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 200 ./bench_attn --bar --det --peak 788 --iters 10 --json $OUT/fa4cp.jsonl > $OUT/bench.txt 2>&1; echo "bench rc=$? t=$(el)"
timeout 60 ./bench_attn --shape 64,4096,0 --peak 788 --iters 10 --json $OUT/fa4cp_d64.jsonl >> $OUT/bench.txt 2>&1; echo "bench d64 rc=$? t=$(el)"
cat $OUT/bench.txt
python3 -c "
import torch,json
a=torch.randn(8192,8192,device='cuda',dtype=torch.bfloat16);b=torch.randn_like(a)
for _ in range(3): a@b
torch.cuda.synchronize();e=[torch.cuda.Event(enable_timing=True) for _ in range(2)];e[0].record()
for _ in range(10): a@b
e[1].record();e[1].synchronize();print(json.dumps({'matmul_bf16_tflops':round(10*2*8192**3/e[0].elapsed_time(e[1])/1e9,1)}))" | tee $OUT/matmul.json
timeout 300 python3 fa4_anchor.py --shapes "128,4096,0;128,8192,0;128,8192,1;128,16384,0;128,16384,1;128,32768,1;64,16384,1;64,4096,0" --json $OUT/anchor.jsonl > $OUT/anchor.txt 2>&1; echo "anchor rc=$? t=$(el)"; cat $OUT/anchor.txt | cut -c1-400
