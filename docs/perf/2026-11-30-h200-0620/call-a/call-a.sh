#!/bin/bash
# call A (the forward's tile counter kept 0 across calls, no memset; PDL launches of the attention kernels): stash
# FA4 part 1; conformance (every head dim, both
# directions, the step_spec rescale path under tuning 8192), CP on one GPU, the three
# sanitizers and the runner's acceptance job, all at once (their time is the CPU's
# float64 reference: 16 cores); then bench_cp three times with PDL and without (2^41), interleaved
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x test_* bench_* fa4cp-run
NL=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$PWD:$NL; O=/tmp/o; mkdir -p $O
fin() { tar czf $OUT/a.tgz -C $O . ; }; trap fin EXIT
bash ../../.anchors/install.sh
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv; } | tee $O/gpu.txt
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
cat $O/acc.rc; grep -E "^# cases|concluded" $O/acc.txt; tail -1 $O/acc.err
python3 summary.py $O/acc/results.jsonl 2>&1 | tail -15 | cut -c1-170
for i in 1 2 3; do for tu in 0 2199023255552; do echo "== bench_cp 32k cp 8 ($i, tuning $tu)"; FA4CP_CUDA_TUNING=$tu timeout 40 ./bench_cp --tokens 32768 --cp 8 --iters 10 --warmup 2 > $O/bench_cp$i-$tu.txt 2>&1; echo "rc=$? $(el)"; tail -8 $O/bench_cp$i-$tu.txt | head -4; done; done
