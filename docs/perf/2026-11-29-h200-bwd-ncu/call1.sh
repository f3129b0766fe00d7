#!/bin/bash
# call 1 (bwd): what separates our d128 backward from cuDNN's, S16k dense (B 2, H 16)
# and S8k causal (B 4, H 16): ncu (--clock-control none, one launch after warm-up,
# the same sections for both; SourceCounters on ours), then sustained loops of both.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn
export LD_LIBRARY_PATH=$PWD PYTHONUNBUFFERED=1; O=/tmp/o1; mkdir -p $O; S=$(date +%s)
el() { echo "t=$(( $(date +%s) - S ))"; }; fin() { tar czf $OUT/c1.tgz --exclude='*.ncu-rep' -C $O . ; }; trap fin EXIT
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
ncu --query-metrics --chip gh100 2>/dev/null | grep -iE "gmma|pipe_tensor" > $O/tensor_metrics.txt
GM=$(grep -oE "^sm__pipe_tensor_op_gmma_cycles_active" $O/tensor_metrics.txt | head -1)
MET="sm__cycles_elapsed.avg.per_second,smsp__inst_executed.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_red.sum,lts__t_sectors_op_read.sum,lts__t_sectors_op_write.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,smsp__inst_executed_op_shared_st.sum,smsp__inst_executed_op_shared_ld.sum"
[ -n "$GM" ] && MET="$MET,$GM.avg.pct_of_peak_sustained_active,$GM.avg.pct_of_peak_sustained_elapsed"
SEC="--clock-control none --import-source no --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section InstructionStats --section LaunchStats --section Occupancy --metrics $MET"
for sh in 128,16384,0 128,8192,1; do n=ours_${sh//,/_}
  timeout 60 ncu $SEC --section SourceCounters -k regex:bwd_ws -s 2 -c 1 -o $O/$n ./bench_attn --profile --shape $sh > $O/ncu_$n.log 2>&1; echo "ncu $n rc=$? $(el)"; done
fin
cat > cudnn1.py <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
for B, S, c in ((2, 16384, False), (4, 8192, True)):
    q, k, v = (torch.randn(B, 16, S, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=c); do = torch.randn_like(o)
        for _ in range(3): torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize(); torch.cuda.cudart().cudaProfilerStart()
        torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize(); torch.cuda.cudart().cudaProfilerStop()
    del q, k, v, o, do
PY
timeout 90 ncu $SEC --profile-from-start off -c 12 -o $O/cudnn python3 cudnn1.py > $O/ncu_cudnn.log 2>&1; echo "ncu cudnn rc=$? $(el)"; fin
for r in $O/*.ncu-rep; do b=${r%.ncu-rep}; ncu -i $r --page details > $b.details.txt 2>&1; ncu -i $r --page raw --csv > $b.raw.csv 2>&1
  grep -E "^  [a-zA-Z_].*Context|^\s+(Duration|SM Frequency|Elapsed Cycles|Compute \(SM\)|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L2 Hit Rate|Executed Instructions  |Registers Per|Dynamic Shared) " $b.details.txt | cut -c1-150 | sed "s|^|$(basename $b) |" | awk '{$1=$1};1'; done
for n in ours_128_16384_0 ours_128_8192_1; do timeout 40 ncu -i $O/$n.ncu-rep --page source --csv --print-source sass > $O/$n.sass.csv 2>&1; done; el; fin; tar cf $OUT/reps.tar -C $O $(cd $O; ls *.ncu-rep)
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader -lms 100 > $O/smi.csv & SMI=$!
for sh in 128,16384,0 128,8192,1; do echo "$(date +%T.%N|cut -c1-12) ours_$sh" >> $O/marks.txt; ./bench_attn --shape $sh --iters 40 | tail -1; done
cat > cudnn2.py <<'PY'
import torch, datetime, os, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
for B, S, c, n in ((2, 16384, False, 40), (4, 8192, True, 60)):
    q, k, v = (torch.randn(B, 16, S, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=c); do = torch.randn_like(o)
        f = lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        for _ in range(3): f()
        torch.cuda.synchronize(); ev = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        open(os.environ['O'] + "/marks.txt", "a").write("%s cudnn_%d_%d\n" % (datetime.datetime.now().strftime("%H:%M:%S.%f")[:12], S, c))
        for i in range(n): ev[i].record(); f()
        ev[n].record(); ev[n].synchronize(); t = sorted(ev[i].elapsed_time(ev[i + 1]) for i in range(n))
        fl = 2.5 * 4 * B * 16 * S * S * 128 / (2 if c else 1)
        print("cudnn bwd S%d c%d median %.3f ms %.1f TFLOP/s (first %.3f)" % (S, c, t[n // 2], fl / t[n // 2] / 1e9, ev[0].elapsed_time(ev[1])))
    del q, k, v, o, do
PY
O=$O python3 cudnn2.py | tee $O/cudnn_loop.txt; echo "$(date +%T.%N|cut -c1-12) end" >> $O/marks.txt; sleep 0.3; kill $SMI; el
