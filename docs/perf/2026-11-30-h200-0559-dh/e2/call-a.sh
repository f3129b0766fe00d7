#!/bin/bash
# call A (DH: the deterministic backward's kv-head sections; the forward's and a backward chain's small workspace
# kept per stream; the backward's shared-memory attribute set once per kernel): stash FA4 part 1; DH against
# 2^40 by ncu (the normal main kernel, then the deterministic one); conformance (every head dim, both
# directions, the step_spec rescale path under tuning 8192), CP on one GPU, the three
# sanitizers and the runner's acceptance job, all at once (their time is the CPU's
# float64 reference: 16 cores); then bench_cp twice
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x test_* bench_* fa4cp-run
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL; O=/tmp/o; mkdir -p $O
fin() { tar czf $OUT/a.tgz -C $O . ; }; trap fin EXIT
bash ../../.anchors/install.sh
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv; } | tee $O/gpu.txt
for sh in 128,4096,0 128,8192,0 128,8192,1 128,16384,1 64,16384,1 128,-1,1; do for tu in 1099511627776 0; do
  x=$(FA4CP_CUDA_TUNING=$tu timeout 40 ncu --clock-control none -k regex:bwd_ws --metrics sm__cycles_elapsed.max ./bench_attn --profile --det --shape $sh 2>&1 | grep -E "sm__cycles" | awk '{print $NF}' | tr '\n' ' ')
  echo "ncu $sh $tu (normal, det): $x"; done; done | tee $O/ncu.txt; el
( timeout 320 ./test_attn cuda > $O/attn.tap 2>&1; echo "test_attn cuda rc=$? $(el)" > $O/attn.rc ) &
( timeout 150 ./test_cp_gpu > $O/cp.tap 2>&1; echo "test_cp_gpu rc=$? $(el)" > $O/cp.rc ) &
( FA4CP_CUDA_TUNING=8192 timeout 150 ./test_attn cuda fwd > $O/attn8192.tap 2>&1; echo "test_attn cuda fwd 8192 rc=$? $(el)" > $O/attn8192.rc ) &
( FA4CP_CUDA_TUNING=8 timeout 150 ./test_attn cuda fwd > $O/attn8.tap 2>&1; echo "test_attn cuda fwd 8 (GQA packing forced) rc=$? $(el)" > $O/attn8.rc ) &
( FA4CP_CUDA_TUNING=1073741824 timeout 150 ./test_attn cuda fwd > $O/attnd.tap 2>&1; echo "test_attn cuda fwd 1073741824 (direct O stores) rc=$? $(el)" > $O/attnd.rc ) &
for t in memcheck synccheck racecheck; do ( timeout 150 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.txt 2>&1; echo "$t rc=$? $(el)" > $O/$t.rc ) & done
( /usr/bin/time -f "elapsed %e s" timeout 150 ./fa4cp-run -q acceptance.yaml --ranks 4 -o $O/acc > $O/acc.txt 2> $O/acc.err; echo "acceptance rc=$? $(el)" > $O/acc.rc ) &
wait; el
for f in attn cp attn8192 attn8 attnd; do cat $O/$f.rc; echo "  ok=$(grep -c '^ok' $O/$f.tap) notok=$(grep -c '^not ok' $O/$f.tap) skip=$(grep -c '# SKIP' $O/$f.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/$f.tap | head -8; done
for t in memcheck synccheck racecheck; do cat $O/$t.rc; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -2; done
cat $O/ncu.txt; cat $O/acc.rc; grep -E "^# cases|concluded" $O/acc.txt; tail -1 $O/acc.err
python3 summary.py $O/acc/results.jsonl 2>&1 | tail -15 | cut -c1-170
for i in 1 2; do echo "== bench_cp 32k cp 8 ($i)"; timeout 40 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $O/bench_cp$i.txt 2>&1; echo "rc=$? $(el)"; tail -8 $O/bench_cp$i.txt; done
