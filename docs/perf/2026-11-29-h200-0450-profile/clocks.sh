#!/bin/bash
# clocks and power under sustained load: fa4cp forward/backward vs cuDNN (torch SDPA) vs a bf16 matmul
cd "$(dirname "$0")"; xz -d -f bench_attn.xz; chmod +x bench_attn; export LD_LIBRARY_PATH=$PWD PYTHONUNBUFFERED=1; O=/tmp/o; mkdir -p $O
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader -lms 100 > $O/smi.csv &
SMI=$!
mark() { echo "$(date +%H:%M:%S.%N | cut -c1-12) $1" | tee -a $O/marks.txt; }
sleep 1; mark idle
mark fa4cp_fwd_32kc; ./bench_attn --fwd --shape 128,32768,1 --iters 300 | tail -1
mark fa4cp_fwd_16k; ./bench_attn --fwd --shape 128,16384,0 --iters 300 | tail -1
mark fa4cp_bwd_16k; ./bench_attn --shape 128,16384,0 --iters 60 | tail -1
mark torch_setup; python3 - <<'PY'
import torch, time, datetime, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
def run(name, fn, n, flops):
    for _ in range(3): fn()
    torch.cuda.synchronize(); e=[torch.cuda.Event(enable_timing=True) for _ in range(2)]
    now=datetime.datetime.now(); open("/tmp/o/marks.txt","a").write("%s %s\n" % (now.strftime("%H:%M:%S.%f")[:12], name))
    e[0].record()
    for _ in range(n): fn()
    e[1].record(); e[1].synchronize(); ms=e[0].elapsed_time(e[1])/n
    print(name, "%.3f ms %.1f TFLOP/s" % (ms, flops/ms/1e9), flush=True)
q=torch.randn(1,16,32768,128,device='cuda',dtype=torch.bfloat16); k=torch.randn_like(q); v=torch.randn_like(q)
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    run("cudnn_fwd_32kc", lambda: F.scaled_dot_product_attention(q,k,v,is_causal=True), 300, 4*16*32768**2*128/2)
q=torch.randn(2,16,16384,128,device='cuda',dtype=torch.bfloat16); k=torch.randn_like(q); v=torch.randn_like(q)
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    run("cudnn_fwd_16k", lambda: F.scaled_dot_product_attention(q,k,v,is_causal=False), 300, 4*2*16*16384**2*128)
a=torch.randn(8192,8192,device='cuda',dtype=torch.bfloat16); b=torch.randn_like(a)
run("matmul", lambda: a@b, 300, 2*8192**3)
PY
mark end; sleep 0.5; kill $SMI
python3 - $O <<'PY'
import sys, datetime
O=sys.argv[1]
marks=[l.split(None,1) for l in open(O+"/marks.txt")]
def t(s): h,m,x=s.split(':'); return int(h)*3600+int(m)*60+float(x)
rows=[]
for l in open(O+"/smi.csv"):
    p=[x.strip() for x in l.split(',')]
    try: rows.append((t(p[0].split()[1]), float(p[1].split()[0]), float(p[2].split()[0]), p[4]))
    except Exception: pass
for i in range(len(marks)-1):
    a,b=t(marks[i][0]),t(marks[i+1][0]); name=marks[i][1].strip()
    sel=[r for r in rows if a+0.3<r[0]<b]
    if sel:
        cl=sorted(r[1] for r in sel); pw=sorted(r[2] for r in sel)
        print("%-16s n=%3d sm clock median %4.0f MHz (min %4.0f)  power median %5.1f W (max %5.1f)  reasons %s"%(name,len(sel),cl[len(cl)//2],cl[0],pw[len(pw)//2],pw[-1],sorted(set(r[3] for r in sel))))
PY
tar czf $OUT/c.tgz -C $O .
