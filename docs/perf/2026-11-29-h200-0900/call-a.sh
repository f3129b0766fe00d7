#!/bin/bash
# call A: stash FA4 part 1; conformance of main (every head dim), CP, sanitizers, runner
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x test_* bench_* fa4cp-run
export LD_LIBRARY_PATH=$PWD; O=/tmp/o; mkdir -p $O
bash ../../.anchors/install.sh
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv; } | tee $O/gpu.txt
echo "== test_cp_gpu"; timeout 150 ./test_cp_gpu > $O/cp.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap) skip=$(grep -c '# SKIP' $O/cp.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/cp.tap | head
echo "== test_attn cuda"; timeout 240 ./test_attn cuda > $O/attn.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/attn.tap | head -20
echo "== test_gen_gpu"; timeout 60 ./test_gen_gpu > $O/gen.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/gen.tap)"; grep -E "^not ok|^1\.\." $O/gen.tap | head
for t in memcheck synccheck racecheck; do echo "== $t bench_attn --smoke"; timeout 150 compute-sanitizer --tool $t ./bench_attn --smoke > $O/$t.txt 2>&1; echo "rc=$? $(el)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $O/$t.txt | tail -2; done
echo "== acceptance cuda --ranks 4"; /usr/bin/time -f "elapsed %e s" timeout 100 ./fa4cp-run -q acceptance.yaml --ranks 4 -o $O/acc > $O/acc.txt 2> $O/acc.err; echo "rc=$? $(el)"; grep -E "^# cases|concluded" $O/acc.txt; tail -1 $O/acc.err
python3 summary.py $O/acc/results.jsonl 2>&1 | tail -15 | cut -c1-170
echo "== inject (want 5, then 0)"; FA4CP_RUN_INJECT_ERROR=1 timeout 60 ./fa4cp-run -q inject.yaml --ranks 2 --no-output > $O/inj.txt 2>&1; echo "inj rc=$?"
timeout 60 ./fa4cp-run -q inject.yaml --ranks 2 --no-output > $O/clean.txt 2>&1; echo "clean rc=$? $(el)"
echo "== bench_cp 32k cp 8"; timeout 60 ./bench_cp --tokens 32768 --cp 8 --iters 5 --warmup 1 > $O/bench_cp.txt 2>&1; echo "rc=$? $(el)"; tail -14 $O/bench_cp.txt
tar czf $OUT/a.tgz -C $O .
