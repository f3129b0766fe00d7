#!/bin/bash
# call 1 (fwd): what separates our d128 forward from cuDNN's, S16k dense and causal:
# ncu (--clock-control none, one launch after warm-up, the same sections for both),
# then sustained loops with nvidia-smi sampling (clocks, power) for both.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn
export LD_LIBRARY_PATH=$PWD PYTHONUNBUFFERED=1; O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ | tee $O/gpu.txt; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader | tee -a $O/gpu.txt
SEC="--clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section InstructionStats --section LaunchStats --section Occupancy --section SourceCounters --metrics sm__cycles_elapsed.avg.per_second,smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct"
for c in 0 1; do timeout 30 ncu $SEC -k regex:fwd_ws -s 2 -c 1 -o $O/ours_c$c ./bench_attn --profile --fwd --shape 128,16384,$c > $O/ncu_ours_c$c.log 2>&1; echo "ncu ours c$c rc=$? $(el)"; done
cat > cudnn1.py <<'PY'
import sys, torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
c = sys.argv[1] == '1'
q, k, v = (torch.randn(2, 16, 16384, 128, device='cuda', dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for _ in range(3): F.scaled_dot_product_attention(q, k, v, is_causal=c)
    torch.cuda.synchronize(); torch.cuda.cudart().cudaProfilerStart()
    F.scaled_dot_product_attention(q, k, v, is_causal=c)
    torch.cuda.synchronize(); torch.cuda.cudart().cudaProfilerStop()
PY
for c in 0 1; do timeout 45 ncu $SEC --profile-from-start off -c 1 -o $O/cudnn_c$c python3 cudnn1.py $c > $O/ncu_cudnn_c$c.log 2>&1; echo "ncu cudnn c$c rc=$? $(el)"; done
for r in ours_c0 ours_c1 cudnn_c0 cudnn_c1; do [ -f $O/$r.ncu-rep ] || continue
  ncu -i $O/$r.ncu-rep --page details > $O/$r.details.txt 2>&1; ncu -i $O/$r.ncu-rep --page raw --csv > $O/$r.raw.csv 2>&1
  grep -E "^\s+(Duration|SM Frequency|Elapsed Cycles|Compute \(SM\)|Executed Ipc A|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L2 Hit Rate|Executed Instructions  |sm__inst_executed_pipe_tensor|smsp__inst_executed.sum|dram__bytes_read.sum) " $O/$r.details.txt | sed "s/^/$r /" | awk '{$1=$1};1'; done
timeout 20 ncu -i $O/ours_c0.ncu-rep --page source --csv --print-source sass > $O/ours_c0.sass.csv 2>&1; echo "src rc=$? $(el)"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader -lms 100 > $O/smi.csv & SMI=$!
mark() { echo "$(date +%H:%M:%S.%N | cut -c1-12) $1" >> $O/marks.txt; }
mark ours_c0; ./bench_attn --fwd --shape 128,16384,0 --iters 150 | tail -1
mark ours_c1; ./bench_attn --fwd --shape 128,16384,1 --iters 250 | tail -1
mark torch; cat > cudnn2.py <<'PY'
import torch, datetime, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
q, k, v = (torch.randn(2, 16, 16384, 128, device='cuda', dtype=torch.bfloat16) for _ in range(3))
for c, n in ((0, 150), (1, 250)):
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=bool(c))
        for _ in range(3): f()
        torch.cuda.synchronize(); ev = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        open("%s/marks.txt" % __import__('os').environ['OUT'], "a").write("%s cudnn_c%d\n" % (datetime.datetime.now().strftime("%H:%M:%S.%f")[:12], c))
        for i in range(n): ev[i].record(); f()
        ev[n].record(); ev[n].synchronize(); t = sorted(ev[i].elapsed_time(ev[i + 1]) for i in range(n))
        fl = 4 * 2 * 16 * 16384**2 * 128 / (2 if c else 1)
        print("cudnn c%d median %.3f ms %.1f TFLOP/s (first %.3f)" % (c, t[n // 2], fl / t[n // 2] / 1e9, ev[0].elapsed_time(ev[1])))
PY
python3 cudnn2.py; mark end; sleep 0.3; kill $SMI
python3 - $O <<'PY'
import sys
O = sys.argv[1]; t = lambda s: (lambda h, m, x: int(h) * 3600 + int(m) * 60 + float(x))(*s.split(':'))
marks = [l.split(None, 1) for l in open(O + "/marks.txt")]; rows = []
for l in open(O + "/smi.csv"):
    p = [x.strip() for x in l.split(',')]
    try: rows.append((t(p[0].split()[1]), float(p[1].split()[0]), float(p[2].split()[0]), p[3]))
    except Exception: pass
for i in range(len(marks) - 1):
    a, b = t(marks[i][0]), t(marks[i + 1][0]); sel = [r for r in rows if a + 0.5 < r[0] < b]
    if sel:
        cl = sorted(r[1] for r in sel); pw = sorted(r[2] for r in sel)
        print("%-8s n=%3d sm MHz median %4.0f min %4.0f  W median %5.1f max %5.1f  %s" % (marks[i][1].strip(), len(sel), cl[len(cl) // 2], cl[0], pw[len(pw) // 2], pw[-1], sorted(set(r[3] for r in sel))))
PY
el
