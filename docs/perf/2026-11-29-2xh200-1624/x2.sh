#!/bin/bash
# issue 14 on two H200s (mpirun's PMIx + NCCL): acceptance at cp 2 end to end (bar <= 90 s),
# the 1M-token case at cp 2 and at cp 1; peak memory by nvidia-smi
cd "$(dirname "$0")"; for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x fa4cp-run test_* 2>/dev/null
export LD_LIBRARY_PATH=$PWD NCCL_NVLS_ENABLE=0; O=$OUT
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=index,name,driver_version,clocks.sm --format=csv,noheader; nvidia-smi topo -m; } > $O/gpu.txt 2>&1; cat $O/gpu.txt | head -4
M="mpirun --allow-run-as-root -np 2 -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE"
mon() { nvidia-smi --query-gpu=index,memory.used --format=csv,noheader -lms 500 > $O/mem_$1.txt & echo $!; }
p=$(mon acc); /usr/bin/time -f "elapsed %e s" timeout 150 $M ./fa4cp-run -q acceptance.yaml --set cp.size=2 -o $O/acc2 > $O/acc2.txt 2> $O/acc2.err; echo "acceptance cp2 rc=$? $(el)"; kill $p
tail -3 $O/acc2.err; grep -E "^# cases|concluded" $O/acc2.txt | head; python3 summary.py $O/acc2/results.jsonl 2>&1 | cut -c1-170 | tail -16
p=$(mon 1m2); /usr/bin/time -f "elapsed %e s" timeout 180 $M ./fa4cp-run -q long1m_cp2.yaml -o $O/l2 > $O/l2.txt 2> $O/l2.err; echo "1M cp2 rc=$? $(el)"; kill $p
tail -2 $O/l2.err; python3 summary.py $O/l2/results.jsonl 2>&1 | cut -c1-170; sort -t, -k2 -n $O/mem_1m2.txt | tail -2
