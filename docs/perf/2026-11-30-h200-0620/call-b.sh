#!/bin/bash
# call B (binaries of the PDL tree; same warm machine as call A, which stashed FA4 part 1 and ran the checks): assemble FA4; fa4cp bench (bar with the deterministic
# backward, head dims), a bf16 matmul, the FA4 / cuDNN / FA-2 anchors on the same shapes; bench_cp twice
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_*
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL PYTHONUNBUFFERED=1; O=$OUT
bash ../../.anchors/install.sh || exit 3
export FA4_SITE=/tmp/fa4site
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ | tee $O/gpu.txt; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee -a $O/gpu.txt
timeout 100 ./bench_attn --bar --det --peak 788 --iters 10 --json $O/fa4cp.jsonl > $O/bench.txt 2>&1; echo "bench rc=$? $(el)"
H=""; for s in 64,4096,0 96,8192,0 96,8192,1 96,16384,0 96,16384,1 192,8192,0,128 192,8192,1,128 192,16384,0,128 192,16384,1,128 256,16384,0; do H="$H --shape $s"; done
timeout 80 ./bench_attn $H --peak 788 --iters 10 --json $O/fa4cp_hd.jsonl >> $O/bench.txt 2>&1; echo "bench hd rc=$? $(el)"
timeout 40 ./bench_attn --shape 128,-2,1 --shape 128,-2,0 --shape 128,-3,0 --shape 128,-3,1 --fwd --variants 0,16 --peak 788 --iters 20 --json $O/fa4cp_gqa.jsonl >> $O/bench.txt 2>&1; echo "bench gqa rc=$? $(el)"
cat $O/bench.txt
python3 -c "
import torch,json
a=torch.randn(8192,8192,device='cuda',dtype=torch.bfloat16);b=torch.randn_like(a)
for _ in range(3): a@b
torch.cuda.synchronize();e=[torch.cuda.Event(enable_timing=True) for _ in range(2)];e[0].record()
for _ in range(10): a@b
e[1].record();e[1].synchronize();print(json.dumps({'matmul_bf16_tflops':round(10*2*8192**3/e[0].elapsed_time(e[1])/1e9,1)}))" | tee $O/matmul.json
timeout 200 python3 fa4_anchor.py --shapes "128,4096,0;128,8192,0;128,8192,1;128,16384,0;128,16384,1;128,32768,1;64,16384,1;64,4096,0;96,8192,0;96,8192,1;96,16384,0;96,16384,1;192,8192,0,128;192,8192,1,128;192,16384,0,128;192,16384,1,128;256,16384,0" --json $O/anchor.jsonl > $O/anchor.txt 2>&1; echo "anchor rc=$? $(el)"; cut -c1-300 $O/anchor.txt
for i in 1 2; do echo "== bench_cp 32k cp 8 ($i)"; timeout 40 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $O/bench_cp$i.txt 2>&1; echo "rc=$? $(el)"; tail -8 $O/bench_cp$i.txt; done
