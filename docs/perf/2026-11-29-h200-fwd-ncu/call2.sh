#!/bin/bash
# call 2 (fwd): main's bench_attn and fwd's interleaved (main, fwd, main, fwd; fwd with
# tuning 0 = the new default, 4096 = the ALT tile: NS 2 with the same code, 2048 = K and V
# loaded together, 1048576 = a quarter of the exp2 on the FMA pipe, 64 = fixed tile order),
# the forward tests (test_attn cuda fwd; then with the ALT tile), compute-sanitizer
# on the forward smoke, test_cp_gpu, the clock of a sustained loop, and an ncu profile of the
# new d128 kernel (SourceCounters: stalls per SASS line).  Everything lands in $OUT/c2.tgz.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn* test_*
export LD_LIBRARY_PATH=$PWD PYTHONUNBUFFERED=1; O=/tmp/o2; mkdir -p $O; S=$(date +%s)
el() { echo "t=$(( $(date +%s) - S ))"; }
fin() { tar czf $OUT/c2.tgz -C $O . ; }
trap fin EXIT
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
for r in 1 2; do
  echo "== round $r main $(date -u +%T)"; ./bench_attn.main --bar --fwd --iters 10 | tee $O/bench_main_$r.txt | grep -E "^\|  +(128|64)"
  echo "== round $r fwd $(date -u +%T)"; ./bench_attn --bar --fwd --iters 10 --variants 0,4096,2048,1048576,64 | tee $O/bench_fwd_$r.txt | grep -E "^tuning"
done; el; fin
echo "== test_attn cuda fwd"; timeout 80 ./test_attn cuda fwd > $O/attn_fwd.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn_fwd.tap) notok=$(grep -c '^not ok' $O/attn_fwd.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/attn_fwd.tap | head
for t in memcheck racecheck synccheck; do timeout 25 compute-sanitizer --tool $t ./bench_attn --fwd --smoke > $O/san_$t.txt 2>&1; echo "$t rc=$? $(el) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san_$t.txt | tail -1) $(grep smoke: $O/san_$t.txt | cut -c1-40)"; done; fin
echo "== test_cp_gpu"; timeout 45 ./test_cp_gpu > $O/cp.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap) notok=$(grep -c '^not ok' $O/cp.tap) skip=$(grep -c '# SKIP' $O/cp.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/cp.tap | head -5; fin
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader -lms 50 > $O/smi.csv & SMI=$!
./bench_attn --fwd --shape 128,16384,0 --iters 300 | tail -1 | tee $O/loop.txt; kill $SMI
python3 -c "
r=[l.split(',') for l in open('$O/smi.csv')]; r=[(float(x[1].split()[0]),float(x[2].split()[0])) for x in r if len(x)>3 and 'MHz' in x[1]]
b=sorted(c for c,w in r if w>350); print('loop samples above 350 W: n=%d sm MHz median %s min %s max %s' % (len(b), b[len(b)//2] if b else '-', b[0] if b else '-', b[-1] if b else '-'))" | tee -a $O/loop.txt; el
SEC="--clock-control none --import-source no --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --metrics sm__cycles_elapsed.avg.per_second,smsp__inst_executed.sum"
timeout 30 ncu $SEC -k regex:fwd_ws -s 2 -c 1 -o $O/fwd_c0 ./bench_attn --profile --fwd --shape 128,16384,0 > $O/ncu.log 2>&1; echo "ncu rc=$? $(el)"
ncu -i $O/fwd_c0.ncu-rep --page details > $O/fwd_c0.details.txt 2>&1; ncu -i $O/fwd_c0.ncu-rep --page raw --csv > $O/fwd_c0.raw.csv 2>&1
timeout 15 ncu -i $O/fwd_c0.ncu-rep --page source --csv --print-source sass > $O/fwd_c0.sass.csv 2>&1; echo "src rc=$? $(el)"
grep -E "^\s+(Duration|SM Frequency|Elapsed Cycles|Compute \(SM\)|Issue Slots Busy|No Eligible|Warp Cycles Per Issued) " $O/fwd_c0.details.txt | awk '{$1=$1};1'
fin
echo "== test_attn cuda fwd, tuning 4096 (the ALT tile)"; FA4CP_CUDA_TUNING=4096 timeout 40 ./test_attn cuda fwd > $O/attn_fwd_alt.tap 2>&1; echo "rc=$? $(el) ok=$(grep -c '^ok' $O/attn_fwd_alt.tap) notok=$(grep -c '^not ok' $O/attn_fwd_alt.tap)"; fin
timeout 25 ncu $SEC -k regex:fwd_ws -s 2 -c 1 -o $O/fwd_c1 ./bench_attn --profile --fwd --shape 128,16384,1 > $O/ncu1.log 2>&1; echo "ncu c1 rc=$? $(el)"
ncu -i $O/fwd_c1.ncu-rep --page raw --csv > $O/fwd_c1.raw.csv 2>&1; ncu -i $O/fwd_c1.ncu-rep --page details > $O/fwd_c1.details.txt 2>&1
