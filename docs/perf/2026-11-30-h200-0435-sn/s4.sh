#!/bin/bash
# S4: SN (0, folded: S^T at the turn, the statistics' waits, the first Dsum values) against the old loop (2^38),
# DS2 (2^40: the second Dsum float4 before dP^T's wait too), SLW (2^41: the first LSE float4 before S^T's wait),
# both, WR2 (2^42: the dQ writer's two plane reductions in flight at once)
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
OLD=274877906944; D=1099511627776; L=2199023255552; DL=3298534883328; W=4398046511104
for sh in 128,8192,1 128,16384,0 128,-1,1 128,4096,0; do for r in 1 2; do for tu in $OLD 0 $D $L $DL $W; do
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $tu: $x"; done; done; done; el
for tu in $DL $W; do FA4CP_CUDA_TUNING=$tu timeout 240 ./test_attn cuda bwd > $O/a.tap 2>&1; echo "test_attn cuda bwd ($tu) rc=$? $(el) ok=$(grep -c '^ok' $O/a.tap) notok=$(grep -c '^not ok' $O/a.tap)"; done
for t in racecheck synccheck; do FA4CP_CUDA_TUNING=$W timeout 150 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.txt 2>&1; echo "$t (WR2) rc=$? $(el)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -1; done
