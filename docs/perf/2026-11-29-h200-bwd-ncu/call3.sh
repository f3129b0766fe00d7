#!/bin/bash
# call 3 (bwd): main's bench_attn, bwd128's A (the dq_accum swizzle) and C (A + the rows
# mainloop's wgmma descriptors as a 32-bit low word plus an immediate per k step),
# interleaved: main, A, C, main, A, C; --bar and d64 S4k.  The faster of A and C (sum of
# d128 bwd TFLOP/s over both rounds) then runs the conformance in parallel (timing no longer
# matters): test_attn cuda, test_cp_gpu, compute-sanitizer memcheck/synccheck/racecheck on
# bench_attn --smoke.  Everything lands in $OUT/c3.tgz.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn* test_*
export LD_LIBRARY_PATH=$PWD; O=/tmp/o3; mkdir -p $O; S=$(date +%s)
el() { echo "t=$(( $(date +%s) - S ))"; }; fin() { tar czf $OUT/c3.tgz -C $O . ; }; trap fin EXIT
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
b() { echo "== $2 $(date -u +%T)" >> $O/order.txt; ./bench_attn.$1 --bar --iters 10 > $O/bar_$2.txt 2>&1; ./bench_attn.$1 --shape 64,4096,0 --iters 10 | tail -1 >> $O/bar_$2.txt; }
for r in 1 2; do b main main_$r; b A A_$r; b C C_$r; done; el
col() { grep -E "^\| +(128|64) " $O/bar_$1.txt | awk -F"|" '{print $11}'; }
paste <(grep -E "^\| +(128|64) " $O/bar_main_1.txt | awk -F"|" '{print $2,$3,$6}') <(col main_1) <(col A_1) <(col C_1) <(col main_2) <(col A_2) <(col C_2) | tee $O/ab.txt; fin
W=$(python3 -c "
import sys; r=[l.split() for l in open('$O/ab.txt')]; r=[x for x in r if x[0]=='128']
a=sum(float(x[-5])+float(x[-2]) for x in r); c=sum(float(x[-4])+float(x[-1]) for x in r); print('C' if c>a else 'A')"); W=${W:-A}; echo "winner $W" | tee $O/winner.txt
cp bench_attn.$W bench_attn; cp test_attn.$W test_attn; cp test_cp_gpu.$W test_cp_gpu
timeout 95 ./test_attn cuda > $O/attn.tap 2>&1 & P1=$!
timeout 95 ./test_cp_gpu > $O/cp.tap 2>&1 & P2=$!
for t in memcheck synccheck racecheck; do timeout 95 compute-sanitizer --tool $t ./bench_attn --smoke > $O/san_$t.txt 2>&1 & done
wait $P1; echo "test_attn cuda ($W) rc=$? $(el) ok=$(grep -c '^ok' $O/attn.tap) notok=$(grep -c '^not ok' $O/attn.tap) skip=$(grep -c '# SKIP' $O/attn.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/attn.tap | head
wait $P2; echo "test_cp_gpu ($W) rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap) notok=$(grep -c '^not ok' $O/cp.tap) skip=$(grep -c '# SKIP' $O/cp.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/cp.tap | head -5
wait; for t in memcheck synccheck racecheck; do echo "$t: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san_$t.txt | tail -1) $(grep smoke: $O/san_$t.txt | cut -c1-60)"; done; el
